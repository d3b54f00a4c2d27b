//! Sealing and opening one secret value (CONTRACT.md §3.9 wire format included: nonce
//! generation, AEAD, base64url text). XChaCha20-Poly1305 (32-byte keys) against
//! AES-128-GCM (16-byte keys), for a typical 64-byte value and the 64 KiB maximum.
//! Run: `cargo bench --bench crypto`; results in docs/benchmarks.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use actors::crypto::{secret_aad, Key, KeyRing};
use actors::AccountId;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn seal_open(c: &mut Criterion) {
    let aad = secret_aad(AccountId::generate(), "api_key", 3);
    let rings = [
        (
            "xchacha20poly1305",
            KeyRing::new(Key::from_bytes(&[7u8; 32]).unwrap(), vec![]),
        ),
        (
            "aes128gcm",
            KeyRing::new(Key::from_bytes(&[7u8; 16]).unwrap(), vec![]),
        ),
    ];
    for size in [64usize, 64 * 1024] {
        let value = vec![b'x'; size];
        let mut group = c.benchmark_group(format!("secret_{size}B"));
        group.throughput(Throughput::Bytes(size as u64));
        for (name, ring) in &rings {
            group.bench_with_input(BenchmarkId::new("seal", name), &value, |b, v| {
                b.iter(|| ring.seal(v, aad.as_bytes()).unwrap());
            });
            let sealed = ring.seal(&value, aad.as_bytes()).unwrap();
            group.bench_with_input(BenchmarkId::new("open", name), &sealed, |b, s| {
                b.iter(|| ring.open(s, aad.as_bytes()).unwrap());
            });
        }
        group.finish();
    }
}

criterion_group!(benches, seal_open);
criterion_main!(benches);
