//! Accepting connections: plain HTTP and, when configured, HTTPS; HTTP/1.1
//! and HTTP/2 on either (hyper-util's `auto`). On shutdown the listener
//! closes and open connections finish their requests, within the
//! shutdown timeout.

use std::{sync::Arc, time::Duration};

use hyper::service::service_fn;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::proxy::{Peer, Proxy};

/// What every connection of one listener shares.
#[derive(Clone)]
pub struct Listener {
    pub proxy: Arc<Proxy>,
    pub tls: Option<TlsAcceptor>,
    pub header_read_timeout: Duration,
    pub shutdown_timeout: Duration,
}

impl Listener {
    /// Accept until `shutdown`, then let open connections finish.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) {
        let graceful = GracefulShutdown::new();
        let builder = Arc::new(self.builder());
        loop {
            let (stream, address) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of descriptors and the like: pause rather than spin.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let peer = Peer { address, https: self.tls.is_some() };
            self.connection(stream, peer, builder.clone(), &graceful);
        }
        drop(listener);
        if tokio::time::timeout(self.shutdown_timeout, graceful.shutdown()).await.is_err() {
            tracing::warn!("connections still open at the end of the shutdown timeout");
        }
    }

    fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(self.header_read_timeout).keep_alive(true);
        builder.http2().timer(TokioTimer::new());
        builder
    }

    fn connection(&self, stream: TcpStream, peer: Peer, builder: Arc<auto::Builder<TokioExecutor>>, graceful: &GracefulShutdown) {
        let proxy = self.proxy.clone();
        let service = service_fn(move |request| {
            let proxy = proxy.clone();
            async move { Ok::<_, std::convert::Infallible>(proxy.handle(request, peer).await) }
        });
        match &self.tls {
            None => {
                let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let watched = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = watched.await;
                });
            }
            Some(acceptor) => {
                // The handshake runs in the connection's own task, so a slow
                // client cannot hold up the accept loop; shutdown does not
                // wait for connections still in their handshake.
                let (acceptor, timeout, watcher) = (acceptor.clone(), self.header_read_timeout, graceful.watcher());
                tokio::spawn(async move {
                    let Ok(Ok(tls)) = tokio::time::timeout(timeout, acceptor.accept(stream)).await else { return };
                    let connection = builder.serve_connection(TokioIo::new(tls), service).into_owned();
                    let _ = watcher.watch(connection).await;
                });
            }
        }
    }
}
