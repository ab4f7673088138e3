//! The server's `tools/list_changed`, seen as it is read.
//!
//! rmcp runs each notification's handler as a task of its own, while a response goes straight
//! to the call waiting for it. A server that changes its tools during a call says so before
//! answering, yet the answer could reach deputy before the handler marked the list stale, and
//! the next request would go out with the old list. Marked here, in the transport, the
//! notification is seen in the order the server sent it: before the answer that follows it.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rmcp::RoleClient;
use rmcp::model::{JsonRpcMessage, ServerNotification};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;

/// A transport that marks the tool list stale when the server says it changed.
pub(crate) struct Watched<T> {
    inner: T,
    dirty: Arc<AtomicBool>,
}

impl<T> Watched<T> {
    pub(crate) fn new(inner: T, dirty: Arc<AtomicBool>) -> Self {
        Self { inner, dirty }
    }
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for Watched<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<RoleClient>>> + Send {
        let dirty = self.dirty.clone();
        let next = self.inner.receive();
        async move {
            let message = next.await;
            if let Some(JsonRpcMessage::Notification(n)) = &message
                && matches!(
                    n.notification,
                    ServerNotification::ToolListChangedNotification(_)
                )
            {
                dirty.store(true, Ordering::SeqCst);
            }
            message
        }
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// A server that has already written a notification and then an answer.
    struct Written(VecDeque<RxJsonRpcMessage<RoleClient>>);

    impl Transport<RoleClient> for Written {
        type Error = std::io::Error;

        fn send(
            &mut self,
            _: TxJsonRpcMessage<RoleClient>,
        ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
            std::future::ready(Ok(()))
        }

        fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<RoleClient>>> + Send {
            let next = self.0.pop_front();
            async move { next }
        }

        async fn close(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn the_list_is_stale_before_the_answer_after_the_notice_is_read() {
        let message = |v: serde_json::Value| serde_json::from_value(v).unwrap();
        let dirty = Arc::new(AtomicBool::new(false));
        let mut t = Watched::new(
            Written(VecDeque::from([
                message(
                    serde_json::json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}),
                ),
                message(
                    serde_json::json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [], "isError": false}}),
                ),
            ])),
            dirty.clone(),
        );
        assert!(t.receive().await.is_some());
        assert!(dirty.load(Ordering::SeqCst), "marked as the notice is read");
        dirty.store(false, Ordering::SeqCst);
        assert!(t.receive().await.is_some());
        assert!(!dirty.load(Ordering::SeqCst), "an answer marks nothing");
    }
}
