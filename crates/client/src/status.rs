//! [`fetch_status`] and [`fetch_digest`]: one replica's view of itself,
//! without a session.

use std::time::Duration;

use chorus_limits::CLIENT_FRAME_BYTES_MAX;
use chorus_paxos::ReplicaId;
use chorus_proto::{
    encode_frame, read_frame, write_frame, ClientFrame, Hello, Peer, ReplicaAddress, Request, Response, ServerFrame,
    StateDigest, StatusReport,
};
use chorus_tls::ClientTls;

use crate::error::ClientError;
use crate::limits::STATUS_FRAMES_MAX;
use crate::transport::{open_stream, Endpoints};

/// Request id of the status request on its private connection.
const STATUS_REQUEST_ID: u64 = 1;

/// Asks replica `id` of `endpoints` for its status; gives up after
/// `timeout`. Any replica answers, leader or not.
pub async fn fetch_status(
    endpoints: &Endpoints,
    id: ReplicaId,
    timeout: Duration,
) -> Result<StatusReport, ClientError> {
    let addr = endpoints.replica(id)?.client_addr;
    match ask(endpoints, id, Request::Status, timeout).await? {
        Response::Status(report) => Ok(report),
        other => Err(ClientError::Protocol(format!("{addr} answered a status request with {other:?}"))),
    }
}

/// Asks replica `id` of `endpoints` for a digest of its applied state;
/// gives up after `timeout`. Any replica answers.
pub async fn fetch_digest(endpoints: &Endpoints, id: ReplicaId, timeout: Duration) -> Result<StateDigest, ClientError> {
    let addr = endpoints.replica(id)?.client_addr;
    match ask(endpoints, id, Request::Digest, timeout).await? {
        Response::Digest(digest) => Ok(digest),
        other => Err(ClientError::Protocol(format!("{addr} answered a digest request with {other:?}"))),
    }
}

async fn ask(
    endpoints: &Endpoints,
    id: ReplicaId,
    request: Request,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let replica = endpoints.replica(id)?;
    let addr = replica.client_addr;
    match tokio::time::timeout(timeout, exchange(replica, endpoints.tls.as_ref(), request)).await {
        Ok(result) => result,
        Err(_) => Err(ClientError::Unavailable(format!("{addr} did not answer within {} ms", timeout.as_millis()))),
    }
}

/// Connects, greets, asks and reads frames until the reply.
async fn exchange(
    replica: &ReplicaAddress,
    tls: Option<&ClientTls>,
    request: Request,
) -> Result<Response, ClientError> {
    let addr = replica.client_addr;
    let unavailable = |e: &dyn std::fmt::Display| ClientError::Unavailable(format!("{addr}: {e}"));
    let mut stream = open_stream(replica, tls).await.map_err(ClientError::Unavailable)?;
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
