//! A limit on requests in flight across all connections, as a tower layer: beyond the limit
//! a request is answered RESOURCE_EXHAUSTED at once instead of queueing. (tower's
//! `GlobalConcurrencyLimit` takes its permit in `poll_ready`, which a server that clones the
//! service per connection holds for the connection's life, so it limits connections instead.)

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Semaphore;
use tonic::body::Body;

#[derive(Clone)]
pub struct ShedLayer {
    slots: Arc<Semaphore>,
    max: usize,
}

impl ShedLayer {
    pub fn new(max: usize) -> ShedLayer {
        ShedLayer {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }
}

impl<S> tower::Layer<S> for ShedLayer {
    type Service = Shed<S>;
    fn layer(&self, inner: S) -> Shed<S> {
        Shed {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Shed<S> {
    inner: S,
    layer: ShedLayer,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Shed<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match self.layer.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                let fut = self.inner.call(req);
                Box::pin(async move {
                    let r = fut.await;
                    drop(permit);
                    r
                })
            }
            Err(_) => {
                let status = tonic::Status::resource_exhausted(format!(
                    "the manager is serving {} requests, its max-concurrent-requests; retry later",
                    self.layer.max
                ));
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}
