//! Every acknowledged write survives SIGKILL: a child process records incidents and prints
//! each id once `record` has returned; the parent kills it mid-stream, reopens the file and
//! checks every acknowledged incident.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use x0tta_core::*;
use x0tta_knowledge::{KnowledgeConfig, RedbKnowledge};

const WRITER_ENV: &str = "X0TTA_KNOWLEDGE_CRASH_WRITER";

fn incident(i: u64) -> Incident {
    Incident {
        node: NodeId::new("writer").unwrap(),
        detected_at: Timestamp::from_millis(1_700_000_000_000 + i),
        observation: ContentId::of_dag_cbor(&i.to_be_bytes()),
        anomaly: Anomaly::new(
            AnomalyKind::DiskPressure,
            Severity::Medium,
            0.5,
            Subject::Host,
            "t",
        ),
        root_cause: Some(format!("write {i}")),
        plan: None,
        report: None,
        resolution: Resolution::NoPlan,
    }
}

/// The child: writes until killed.
fn writer(path: &str, start: u64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = RedbKnowledge::open(path, KnowledgeConfig::with_retention(100_000)).unwrap();
        for i in start.. {
            let id = store.record(&incident(i)).await.unwrap();
            println!("ack {id}");
        }
    });
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    if let Ok(spec) = std::env::var(WRITER_ENV) {
        let (path, start) = spec.split_once('|').unwrap();
        writer(path, start.parse().unwrap());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.redb");
    let mut acked: Vec<ContentId> = Vec::new();
    for (round, kill_after) in [7usize, 23, 1, 40].into_iter().enumerate() {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "acknowledged_writes_survive_sigkill",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                WRITER_ENV,
                format!("{}|{}", path.display(), round * 1_000_000),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut this_round = 0;
        for line in out.lines() {
            let line = line.unwrap();
            if let Some(id) = line.strip_prefix("ack ") {
                acked.push(id.parse().unwrap());
                this_round += 1;
                if this_round == kill_after {
                    child.kill().unwrap(); // SIGKILL, possibly mid-transaction
                    break;
                }
            }
        }
        child.wait().unwrap();
        assert_eq!(this_round, kill_after, "writer died early");

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let store =
                RedbKnowledge::open(&path, KnowledgeConfig::with_retention(100_000)).unwrap();
            for id in &acked {
                let got = store.get(id).await.unwrap();
                assert!(
                    got.is_some_and(|i| i.content_id().unwrap() == *id),
                    "acknowledged {id} lost"
                );
            }
            assert!(store.known_incidents().unwrap() >= acked.len() as u64);
        });
    }
}
