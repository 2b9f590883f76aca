//! Length-prefixed framing with a hard size limit.

use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {bytes} bytes exceeds the limit of {max} bytes")]
    TooLarge { bytes: usize, max: usize },
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// Encodes `value` as one frame (length prefix included).
pub fn encode_frame<T: Serialize>(value: &T, max_bytes: usize) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::new();
    encode_frame_into(value, max_bytes, &mut out)?;
    Ok(out)
}

/// Appends `value` as one frame (length prefix included) to `out`; on an
/// error `out` is left as it was.
pub fn encode_frame_into<T: Serialize>(value: &T, max_bytes: usize, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let encoded = postcard::to_io(value, &mut *out).map(|_| ()).map_err(|e| FrameError::Malformed(e.to_string()));
    let payload = out.len() - start - 4;
    let checked =
        if payload > max_bytes { Err(FrameError::TooLarge { bytes: payload, max: max_bytes }) } else { Ok(()) };
    if let Err(error) = encoded.and(checked) {
        out.truncate(start);
        return Err(error);
    }
    out[start..start + 4].copy_from_slice(&(payload as u32).to_be_bytes());
    Ok(())
}

/// Decodes one payload (without its length prefix); trailing bytes are an error.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    let (value, rest) = postcard::take_from_bytes(payload).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::Malformed(format!("{} trailing bytes", rest.len())));
    }
    Ok(value)
}

/// Reads one frame. `Err(Closed)` on a clean end of stream before a frame
/// starts. The length is checked before anything else is read, and the
/// buffer grows only as bytes arrive: a sender that claims a large frame
/// and sends little holds little memory.
pub async fn read_frame<R, T>(reader: &mut R, max_bytes: usize, buf: &mut Vec<u8>) -> Result<T, FrameError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut prefix = [0u8; 4];
    match reader.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let bytes = u32::from_be_bytes(prefix) as usize;
    if bytes > max_bytes {
        return Err(FrameError::TooLarge { bytes, max: max_bytes });
    }
    buf.clear();
    let read = (&mut *reader).take(bytes as u64).read_to_end(buf).await?;
    if read < bytes {
        return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    decode_payload(buf)
}

/// Writes one already-encoded frame and flushes it.
pub async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, frame: &[u8]) -> Result<(), FrameError> {
    writer.write_all(frame).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_append_to_one_buffer_and_a_refused_one_leaves_it_unchanged() {
        let mut out = Vec::new();
        encode_frame_into(&"first".to_string(), 64, &mut out).expect("fits");
        encode_frame_into(&"second".to_string(), 64, &mut out).expect("fits");
        let before = out.clone();
        let refused = encode_frame_into(&"x".repeat(100), 64, &mut out);
        assert!(matches!(refused, Err(FrameError::TooLarge { max: 64, .. })));
        assert_eq!(out, before);
        let mut reader: &[u8] = &out;
        let mut buf = Vec::new();
        let first: String = read_frame(&mut reader, 64, &mut buf).await.expect("decodes");
        let second: String = read_frame(&mut reader, 64, &mut buf).await.expect("decodes");
        assert_eq!((first.as_str(), second.as_str()), ("first", "second"));
        assert!(reader.is_empty());
    }

    #[tokio::test]
    async fn frames_round_trip_and_oversized_lengths_are_refused_before_reading() {
        let frame = encode_frame(&("hello".to_string(), 7u64), 64).expect("fits");
        let mut reader: &[u8] = &frame;
        let mut buf = Vec::new();
        let value: (String, u64) = read_frame(&mut reader, 64, &mut buf).await.expect("decodes");
        assert_eq!(value, ("hello".to_string(), 7));

        let huge = u32::MAX.to_be_bytes();
        let mut reader: &[u8] = &huge;
        let result: Result<u8, _> = read_frame(&mut reader, 64, &mut buf).await;
        assert!(matches!(result, Err(FrameError::TooLarge { bytes, max: 64 }) if bytes == u32::MAX as usize));
        assert!(buf.capacity() < 1024, "no allocation for a refused length");

        // A length within the limit but a short body: memory follows the
        // bytes that came, not the bytes claimed.
        let mut claimed = (1_000_000u32).to_be_bytes().to_vec();
        claimed.extend_from_slice(&[0; 10]);
        let mut reader: &[u8] = &claimed;
        let result: Result<u8, _> = read_frame(&mut reader, 2_000_000, &mut buf).await;
        assert!(matches!(result, Err(FrameError::Io(_))), "{result:?}");
        assert!(buf.capacity() < 64 * 1024, "{} bytes held for 10 received", buf.capacity());
    }

    #[tokio::test]
    async fn truncated_and_trailing_frames_are_errors() {
        let frame = encode_frame(&5u32, 64).expect("fits");
        let mut reader: &[u8] = &frame[..frame.len() - 1];
        let mut buf = Vec::new();
        let result: Result<u32, _> = read_frame(&mut reader, 64, &mut buf).await;
        assert!(matches!(result, Err(FrameError::Io(_))));
        let mut reader: &[u8] = &[];
        let result: Result<u32, _> = read_frame(&mut reader, 64, &mut buf).await;
        assert!(matches!(result, Err(FrameError::Closed)));
        let result: Result<u8, _> = decode_payload(&[1, 2]);
        assert!(matches!(result, Err(FrameError::Malformed(_))));
    }

    #[test]
    fn encoding_past_the_limit_is_refused() {
        let big = vec![0u8; 100];
        assert!(matches!(encode_frame(&big, 50), Err(FrameError::TooLarge { .. })));
    }
}
