//! Reading one response: a whole JSON body, or a stream of server-sent events handed on as
//! each network read arrives, with the idle timeout between reads. The protocol's
//! [`Decode`] says what the bytes mean; this says when the response is over, or cut short.

use futures::StreamExt;

use crate::client::{Failure, Tx, send};
use crate::config::Target;
use crate::error::LlmError;
use crate::failure::decode_error;
use crate::protocol::Decode;
use crate::sse::SseDecoder;

pub(crate) async fn whole(
    resp: reqwest::Response,
    target: &Target,
    tx: &Tx,
    decoder: &mut dyn Decode,
) -> Result<(), Failure> {
    let base_url = &target.provider.base_url;
    let bytes = match tokio::time::timeout(target.provider.idle_timeout, resp.bytes()).await {
        Err(_) => {
            return Err(LlmError::Timeout {
                phase: "response body",
                after: target.provider.idle_timeout,
                base_url: base_url.clone(),
            }
            .into());
        }
        Ok(Err(_)) => {
            return Err(LlmError::StreamInterrupted {
                base_url: base_url.clone(),
            }
            .into());
        }
        Ok(Ok(b)) => b,
    };
    let mut out = Vec::new();
    decoder
        .whole(&bytes, &mut out)
        .map_err(|e| decode_error(e, base_url))?;
    for e in out {
        send(tx, e).await.map_err(|_| Failure::Closed)?;
    }
    Ok(())
}

pub(crate) async fn streamed(
    resp: reqwest::Response,
    target: &Target,
    tx: &Tx,
    decoder: &mut dyn Decode,
) -> Result<(), Failure> {
    let p = &target.provider;
    let not_utf8 = |_| LlmError::MalformedStream {
        base_url: p.base_url.clone(),
        detail: "the stream is not UTF-8 text".into(),
    };
    let mut body = resp.bytes_stream();
    let mut sse = SseDecoder::new();
    let mut out = Vec::new();
    let mut done = false;
    'read: loop {
        while let Some(event) = sse.next_event().map_err(not_utf8)? {
            if decoder
                .event(event, &mut out)
                .map_err(|e| decode_error(e, &p.base_url))?
            {
                done = true;
                break 'read;
            }
        }
        // Hand over what this network read produced before waiting for more.
        for e in out.drain(..) {
            send(tx, e).await.map_err(|_| Failure::Closed)?;
        }
        let next = match tokio::time::timeout(p.idle_timeout, body.next()).await {
            // A server that keeps the connection open after the finish reason.
            Err(_) if decoder.is_complete() => break,
            Err(_) => {
                return Err(LlmError::Timeout {
                    phase: "stream idle",
                    after: p.idle_timeout,
                    base_url: p.base_url.clone(),
                }
                .into());
            }
            Ok(next) => next,
        };
        match next {
            Some(Ok(bytes)) => sse.push(&bytes),
            // Broken after the finish reason: nothing of the answer is missing.
            Some(Err(_)) if decoder.is_complete() => break,
            Some(Err(_)) => {
                return Err(LlmError::StreamInterrupted {
                    base_url: p.base_url.clone(),
                }
                .into());
            }
            None => {
                if let Some(event) = sse.finish().map_err(not_utf8)? {
                    done = decoder
                        .event(event, &mut out)
                        .map_err(|e| decode_error(e, &p.base_url))?;
                }
                break;
            }
        }
    }
    for e in out {
        send(tx, e).await.map_err(|_| Failure::Closed)?;
    }
    // A missing end marker is fine once the finish reason came; a missing finish reason
    // is fine after the end marker if anything was said. Otherwise the stream was cut
    // short.
    let complete = decoder.is_complete() || (done && decoder.has_content());
    if !complete {
        return Err(LlmError::StreamInterrupted {
            base_url: p.base_url.clone(),
        }
        .into());
    }
    Ok(())
}
