use super::*;
use proptest::prelude::*;

const SIZES: &[usize] = &[16, 24, 32];

fn ring(bytes: &[u8]) -> KeyRing {
    KeyRing::new(Key::from_bytes(bytes).unwrap(), vec![])
}

#[test]
fn key_text_forms() {
    let key32 = [7u8; 32];
    let hex64 = hex::encode(key32);
    assert_eq!(parse_key_text(&hex64, SIZES).unwrap(), key32);
    assert_eq!(parse_key_text(&hex64.to_uppercase(), SIZES).unwrap(), key32);
    assert_eq!(
        parse_key_text(&format!("hex:{}", hex::encode([1u8; 16])), SIZES).unwrap(),
        [1u8; 16]
    );
    let b64 = STANDARD.encode(key32);
    assert_eq!(b64.len(), 44);
    assert_eq!(parse_key_text(&b64, SIZES).unwrap(), key32);
    assert_eq!(
        parse_key_text(&format!("base64:{}", b64.trim_end_matches('=')), SIZES).unwrap(),
        key32
    );
    // 32 printable characters are the bytes themselves, even when they look like hex.
    let hexish = "0123456789abcdef0123456789abcdef";
    assert_eq!(parse_key_text(hexish, SIZES).unwrap(), hexish.as_bytes());
}

#[test]
fn key_text_errors_are_specific() {
    assert_eq!(
        parse_key_text("hex:abcd", SIZES).unwrap_err(),
        "hex key decodes to 2 bytes; expected 16, 24 or 32"
    );
    assert_eq!(
        parse_key_text(&format!("base64:{}", STANDARD.encode([0u8; 20])), SIZES).unwrap_err(),
        "base64 key decodes to 20 bytes; expected 16, 24 or 32"
    );
    assert!(parse_key_text("hex:zz", SIZES)
        .unwrap_err()
        .starts_with("hex key is not valid hex"));
    assert!(parse_key_text("short", SIZES)
        .unwrap_err()
        .starts_with("unrecognised key text of 5 characters"));
    assert_eq!(
        parse_key_text(&format!("hex:{}", hex::encode([0u8; 16])), &[32]).unwrap_err(),
        "hex key decodes to 16 bytes; expected 32"
    );
}

#[test]
fn every_key_size_round_trips_and_names_its_key() {
    for size in [16usize, 24, 32] {
        let r = ring(&vec![9u8; size]);
        let sealed = r.seal(b"value", b"aad").unwrap();
        assert!(sealed.starts_with(&format!("v1.{}.", r.current_id())));
        assert_eq!(key_id_of(&sealed), Some(r.current_id()));
        assert_eq!(r.open(&sealed, b"aad").unwrap(), b"value");
    }
    assert!(Key::from_bytes(&[0u8; 20]).is_err());
}

#[test]
fn key_id_is_specified() {
    // first 8 bytes of SHA-256("service-layer key id" ‖ key), hex
    let key = [0u8; 32];
    let digest = Sha256::digest([b"service-layer key id".as_slice(), &key].concat());
    assert_eq!(
        ring(&key).current_id().to_string(),
        hex::encode(&digest[..8])
    );
}

#[test]
fn rotation_previous_keys_open_and_unknown_keys_are_named() {
    let old = ring(&[1u8; 32]);
    let sealed = old.seal(b"s", b"a").unwrap();
    let rotated = KeyRing::new(
        Key::from_bytes(&[2u8; 32]).unwrap(),
        vec![Key::from_bytes(&[1u8; 32]).unwrap()],
    );
    assert_eq!(rotated.open(&sealed, b"a").unwrap(), b"s");
    assert!(rotated
        .seal(b"s", b"a")
        .unwrap()
        .starts_with(&format!("v1.{}.", rotated.current_id())));
    let new_only = ring(&[2u8; 32]);
    assert_eq!(
        new_only.open(&sealed, b"a"),
        Err(CryptoError::UnknownKey(old.current_id()))
    );
}

#[test]
fn aad_binds_account_name_and_version() {
    let r = ring(&[3u8; 32]);
    let a = AccountId::generate();
    let b = AccountId::generate();
    let sealed = r.seal(b"v", secret_aad(a, "Token", 1).as_bytes()).unwrap();
    assert_eq!(
        r.open(&sealed, secret_aad(a, "token", 1).as_bytes())
            .unwrap(),
        b"v",
        "names are case-insensitive"
    );
    for wrong in [
        secret_aad(b, "token", 1),
        secret_aad(a, "other", 1),
        secret_aad(a, "token", 2),
    ] {
        assert_eq!(
            r.open(&sealed, wrong.as_bytes()),
            Err(CryptoError::Authentication)
        );
    }
}

#[test]
fn hmac_sha256_matches_rfc_4231() {
    // Test case 1: 20-byte key.
    assert_eq!(
        hex::encode(hmac_sha256(&[0x0b; 20], b"Hi There")),
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    );
    // Test case 2: short key.
    assert_eq!(
        hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    // Test case 6: a key longer than the block is hashed first.
    assert_eq!(
        hex::encode(hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First"
        )),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip(plaintext in proptest::collection::vec(any::<u8>(), 0..2048),
                  aad in proptest::collection::vec(any::<u8>(), 0..64),
                  size in prop::sample::select(vec![16usize, 24, 32])) {
        let r = ring(&vec![5u8; size]);
        let sealed = r.seal(&plaintext, &aad).unwrap();
        prop_assert_eq!(r.open(&sealed, &aad).unwrap(), plaintext);
    }

    #[test]
    fn any_flipped_byte_is_rejected(plaintext in proptest::collection::vec(any::<u8>(), 1..256),
                                    position in any::<prop::sample::Index>(),
                                    bit in 0u8..8) {
        let r = ring(&[6u8; 32]);
        let sealed = r.seal(&plaintext, b"aad").unwrap();
        let prefix_len = sealed.rfind('.').unwrap() + 1;
        let mut body = URL_SAFE_NO_PAD.decode(&sealed[prefix_len..]).unwrap();
        let i = position.index(body.len());
        body[i] ^= 1 << bit;
        let tampered = format!("{}{}", &sealed[..prefix_len], URL_SAFE_NO_PAD.encode(&body));
        prop_assert_eq!(r.open(&tampered, b"aad"), Err(CryptoError::Authentication));
    }

    #[test]
    fn any_changed_text_character_is_rejected(position in any::<prop::sample::Index>(), replacement in "[a-zA-Z0-9._-]") {
        let r = ring(&[8u8; 24]);
        let sealed = r.seal(b"secret value", b"aad").unwrap();
        let i = position.index(sealed.len());
        let original = &sealed[i..=i];
        prop_assume!(original != replacement);
        let tampered = format!("{}{}{}", &sealed[..i], replacement, &sealed[i + 1..]);
        prop_assert!(r.open(&tampered, b"aad").is_err());
    }

    #[test]
    fn hex_and_base64_key_text_decode_to_the_key(key in proptest::collection::vec(any::<u8>(), 32)) {
        prop_assert_eq!(parse_key_text(&hex::encode(&key), SIZES).unwrap(), key.clone());
        prop_assert_eq!(parse_key_text(&STANDARD.encode(&key), SIZES).unwrap(), key.clone());
        prop_assert_eq!(parse_key_text(&format!("base64:{}", STANDARD.encode(&key)), SIZES).unwrap(), key.clone());
        prop_assert_eq!(parse_key_text(&format!("hex:{}", hex::encode(&key).to_uppercase()), SIZES).unwrap(), key);
    }

    #[test]
    fn key_text_parser_never_panics(text in "\\PC{0,100}") {
        let _ = parse_key_text(&text, SIZES);
    }
}

/// The ciphers holding key material wipe it when dropped (the `zeroize` features of
/// `aes` and `chacha20poly1305`): this fails to compile if a feature goes missing.
#[test]
fn ciphers_wipe_their_keys_on_drop() {
    fn wipes<T: zeroize::ZeroizeOnDrop>() {}
    wipes::<aes::Aes128>();
    wipes::<aes::Aes192>();
    wipes::<chacha20poly1305::XChaCha20Poly1305>();
}
