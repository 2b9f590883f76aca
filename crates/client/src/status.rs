//! [`fetch_status`] and [`fetch_digest`]: one replica's view of itself,
//! without a session.

use std::net::SocketAddr;
use std::time::Duration;

use chorus_limits::CLIENT_FRAME_BYTES_MAX;
use chorus_proto::{
    encode_frame, read_frame, write_frame, ClientFrame, Hello, Peer, Request, Response, ServerFrame, StateDigest,
    StatusReport,
};
use tokio::net::TcpStream;

use crate::error::ClientError;
use crate::limits::STATUS_FRAMES_MAX;

/// Request id of the status request on its private connection.
const STATUS_REQUEST_ID: u64 = 1;

/// Asks the replica at `addr` for its status; gives up after `timeout`.
/// Any replica answers, leader or not.
pub async fn fetch_status(addr: SocketAddr, timeout: Duration) -> Result<StatusReport, ClientError> {
    match ask(addr, Request::Status, timeout).await? {
        Response::Status(report) => Ok(report),
        other => Err(ClientError::Protocol(format!("{addr} answered a status request with {other:?}"))),
    }
}

/// Asks the replica at `addr` for a digest of its applied state; gives up
/// after `timeout`. Any replica answers.
pub async fn fetch_digest(addr: SocketAddr, timeout: Duration) -> Result<StateDigest, ClientError> {
    match ask(addr, Request::Digest, timeout).await? {
        Response::Digest(digest) => Ok(digest),
        other => Err(ClientError::Protocol(format!("{addr} answered a digest request with {other:?}"))),
    }
}

async fn ask(addr: SocketAddr, request: Request, timeout: Duration) -> Result<Response, ClientError> {
    match tokio::time::timeout(timeout, exchange(addr, request)).await {
        Ok(result) => result,
        Err(_) => Err(ClientError::Unavailable(format!("{addr} did not answer within {} ms", timeout.as_millis()))),
    }
}

/// Connects, greets, asks and reads frames until the reply.
async fn exchange(addr: SocketAddr, request: Request) -> Result<Response, ClientError> {
    let unavailable = |e: &dyn std::fmt::Display| ClientError::Unavailable(format!("{addr}: {e}"));
    let mut stream = TcpStream::connect(addr).await.map_err(|e| unavailable(&e))?;
    let hello = encode_frame(&Hello::new(Peer::Client), CLIENT_FRAME_BYTES_MAX)
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    let request = ClientFrame { request_id: STATUS_REQUEST_ID, request };
    let request = encode_frame(&request, CLIENT_FRAME_BYTES_MAX).map_err(|e| ClientError::Protocol(e.to_string()))?;
    write_frame(&mut stream, &hello).await.map_err(|e| unavailable(&e))?;
    write_frame(&mut stream, &request).await.map_err(|e| unavailable(&e))?;
    let mut buffer = Vec::new();
    for _ in 0..STATUS_FRAMES_MAX {
        let frame: ServerFrame =
            read_frame(&mut stream, CLIENT_FRAME_BYTES_MAX, &mut buffer).await.map_err(|e| unavailable(&e))?;
        match frame {
            ServerFrame::Reply { request_id: STATUS_REQUEST_ID, result: Ok(response) } => return Ok(response),
            ServerFrame::Reply { request_id: 0 | STATUS_REQUEST_ID, result: Err(refusal) } => {
                return Err(ClientError::from_refusal(refusal))
            }
            _ => continue,
        }
    }
    Err(ClientError::Protocol(format!("{addr} sent {STATUS_FRAMES_MAX} frames without answering the status request")))
}
