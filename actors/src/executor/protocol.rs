//! The pipe protocol between the server and an executor worker process.
//!
//! A frame is a `u32` little-endian length followed by that many bytes of JSON. The worker
//! speaks first with [`Reply::Hello`] (how well it is confined), then answers each
//! [`Request`] with exactly one reply, in order. JSON keeps the protocol readable in a
//! hex dump and costs little next to a run; the params ride along as raw JSON text, so
//! they are neither re-encoded by the server nor escaped.
//!
//! Both sides bound what they read: the server caps a reply by the run's own limits
//! (`Reply` sizes follow from output, log and action caps), the worker caps a request.

use super::engine::{RunOutput, RunRequest};
use super::sandbox::Confinement;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest request a worker accepts: source (256 KiB) and params (the HTTP body limit)
/// with room to spare.
pub const MAX_REQUEST_BYTES: usize = 64 << 20;

/// Largest hello or probe reply.
pub const MAX_CONTROL_BYTES: usize = 64 << 10;

/// The server sends `Request<&RunRequest>` (no copy of the run); the worker reads
/// `Request<RunRequest>`.
#[derive(Serialize, Deserialize)]
pub enum Request<R = RunRequest> {
    Run(R),
    /// Try what confinement must refuse (open, socket, spawn) and report.
    Probe,
}

#[derive(Serialize, Deserialize)]
pub enum Reply {
    Hello(Confinement),
    Done(RunOutput),
    Probe(BTreeMap<String, String>),
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("pipe closed")]
    Closed,
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("frame of {0} bytes is over the limit of {1}")]
    TooLarge(usize, usize),
    #[error("undecodable frame: {0}")]
    Decode(#[from] serde_json::Error),
}

/// The frame for one message.
pub fn encode(message: &impl Serialize) -> Result<Vec<u8>, serde_json::Error> {
    let mut frame = vec![0; 4];
    serde_json::to_writer(&mut frame, message)?;
    let len = u32::try_from(frame.len() - 4).unwrap_or(u32::MAX);
    frame[..4].copy_from_slice(&len.to_le_bytes());
    Ok(frame)
}

/// Reads one frame (blocking, worker side); `Closed` at end of input.
pub fn read_frame(input: &mut impl Read, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut len = [0; 4];
    match input.read_exact(&mut len) {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        other => other?,
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(FrameError::TooLarge(len, max));
    }
    let mut body = vec![0; len];
    input.read_exact(&mut body)?;
    Ok(body)
}

/// Writes one message as a frame (blocking, worker side) and flushes it.
pub fn write_message(output: &mut impl Write, message: &impl Serialize) -> Result<(), FrameError> {
    output.write_all(&encode(message)?)?;
    output.flush()?;
    Ok(())
}

/// Reads one frame (server side); `Closed` if the worker went away.
pub async fn read_frame_async(
    input: &mut (impl AsyncRead + Unpin),
    max: usize,
) -> Result<Vec<u8>, FrameError> {
    let len = match input.read_u32_le().await {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        other => other? as usize,
    };
    if len > max {
        return Err(FrameError::TooLarge(len, max));
    }
    // Grown as bytes arrive: a length prefix alone commits little memory.
    let mut body = Vec::with_capacity(len.min(64 << 10));
    input.take(len as u64).read_to_end(&mut body).await?;
    if body.len() < len {
        return Err(FrameError::Closed);
    }
    Ok(body)
}

/// Writes a ready frame (server side).
pub async fn write_frame_async(
    output: &mut (impl AsyncWrite + Unpin),
    frame: &[u8],
) -> Result<(), FrameError> {
    match output.write_all(frame).await {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(FrameError::Closed),
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_are_bounded() {
        let frame = encode(&Reply::Probe(BTreeMap::from([(
            "open".to_owned(),
            "allowed".to_owned(),
        )])))
        .unwrap();
        let body = read_frame(&mut frame.as_slice(), 1 << 10).unwrap();
        assert_eq!(body.len() + 4, frame.len());
        match serde_json::from_slice(&body).unwrap() {
            Reply::Probe(map) => assert_eq!(map["open"], "allowed"),
            _ => panic!("wrong reply"),
        }
        assert!(matches!(
            read_frame(&mut frame.as_slice(), 4),
            Err(FrameError::TooLarge(_, 4))
        ));
        assert!(matches!(
            read_frame(&mut [].as_slice(), 4),
            Err(FrameError::Closed)
        ));
    }
}
