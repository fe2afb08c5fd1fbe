//! A handler that panics fails its own request with a 500 `internal_error`,
//! like any other internal error.
//!
//! actix-web 4 does not catch panics: the task serving the connection
//! unwinds, the connection is dropped without an answer, and the caller
//! cannot tell a bug from a network fault. (actix-web-lab's `CatchPanic`
//! answers an empty 500; every error of this API has a JSON body with a
//! code, so these few lines are written here instead.)

use std::panic::AssertUnwindSafe;

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    middleware::Next,
};
use futures::FutureExt;

use crate::error::ApiError;

/// Middleware (`from_fn`): run the rest of the chain, and fail the request
/// with a 500 if it panics, on its first poll (middleware that panics in
/// `call`) or later. The answer is an error, not a response, because the
/// request went down with the panic: actix-web answers an error with its
/// `error_response`, the API's JSON. (Keeping a clone of the request to
/// answer with is not possible: routing needs the only reference to it.)
pub async fn catch_panics(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let served = AssertUnwindSafe(async move { next.call(req).await }).catch_unwind().await;
    served.unwrap_or_else(|panic| {
        let message = panic_message(panic.as_ref());
        tracing::error!(panic = %message, "a request handler panicked; the request fails with 500");
        Err(ApiError::panicked().into())
    })
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic.downcast_ref::<&str>().copied().or_else(|| panic.downcast_ref::<String>().map(String::as_str)).unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use actix_web::{middleware::from_fn, web, App, HttpServer};

    use super::*;

    /// A real server with one worker and a route that panics (built only in
    /// this test): each request gets a JSON 500, and the worker still serves
    /// the next request.
    #[actix_web::test]
    async fn a_panicking_handler_answers_500_and_the_worker_serves_on() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = HttpServer::new(|| {
            App::new()
                .wrap(from_fn(catch_panics))
                .route("/boom", web::get().to(|| async { if true { panic!("boom") } else { "never" } }))
                .route("/fine", web::get().to(|| async { "fine" }))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        let client = reqwest::Client::new();
        for _ in 0..3 {
            let answer = client.get(format!("http://{address}/boom")).send().await.expect("an answer, not a dropped connection");
            assert_eq!(answer.status(), 500);
            let body: serde_json::Value = answer.json().await.unwrap();
            assert_eq!(body["error"]["code"], "internal_error", "{body}");
            let fine = client.get(format!("http://{address}/fine")).send().await.unwrap();
            assert_eq!((fine.status().as_u16(), fine.text().await.unwrap()), (200, "fine".to_owned()));
        }
        handle.stop(false).await;
    }
}
