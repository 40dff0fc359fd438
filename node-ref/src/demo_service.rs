//! The small HTTP service the demo supervises: `/health` answers 200, `/hog?mb=N` makes it
//! hold N MiB more (pages touched, so they count as resident memory).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};

/// Most memory the hog endpoint will hold, MiB.
const MAX_HOG_MB: usize = 1024;

pub(crate) async fn serve(port: u16) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let hog: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    loop {
        let (stream, _) = listener.accept().await?;
        let hog = hog.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let hog = hog.clone();
                async move { Ok::<_, Infallible>(handle(&req, &hog)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn handle(req: &Request<Incoming>, hog: &Mutex<Vec<Vec<u8>>>) -> Response<Full<Bytes>> {
    let reply = |code: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = code;
        r
    };
    match req.uri().path() {
        "/health" => reply(StatusCode::OK, "ok\n".into()),
        "/hog" => {
            let mb = req
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("mb=")))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(64);
            let Ok(mut held) = hog.lock() else {
                return reply(StatusCode::INTERNAL_SERVER_ERROR, "poisoned\n".into());
            };
            let total = held.len().saturating_add(mb);
            if total > MAX_HOG_MB {
                return reply(
                    StatusCode::BAD_REQUEST,
                    format!("refusing to hold more than {MAX_HOG_MB} MiB\n"),
                );
            }
            for _ in 0..mb {
                held.push(vec![0xA5u8; 1 << 20]);
            }
            reply(StatusCode::OK, format!("holding {total} MiB\n"))
        }
        _ => reply(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}
