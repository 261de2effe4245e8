//! The isolation rule as a property: random sequences of API and registry calls by two users,
//! each an editor of one namespace only, never make a manifest or blob of one namespace
//! readable by the other user.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::TestServer;
use crate::isolation::{as_user, can_read, send, start, user, Secret};

const API: &str = "/apis/image.openshift.io/v1";
const STREAMS: [&str; 3] = ["s", "t", "u"];

/// Alice edits `a`, Bob edits `b`.
#[derive(Debug, Clone, Copy)]
enum Actor {
    Alice,
    Bob,
}

impl Actor {
    fn name(self) -> &'static str {
        match self {
            Actor::Alice => "alice",
            Actor::Bob => "bob",
        }
    }
    fn ns(self) -> &'static str {
        match self {
            Actor::Alice => "a",
            Actor::Bob => "b",
        }
    }
    fn other(self) -> Actor {
        match self {
            Actor::Alice => Actor::Bob,
            Actor::Bob => Actor::Alice,
        }
    }
}

/// Which secret an operation names: the actor's own or the other's.
#[derive(Debug, Clone, Copy)]
enum Whose {
    Own,
    Other,
}

#[derive(Debug, Clone)]
enum Op {
    /// An istag whose source is an isimage (digest prefix of `prefix` hex chars) or an istag.
    Tag {
        target: usize,
        source_ns: Whose,
        image: Whose,
        by_tag: bool,
        prefix: usize,
    },
    Map {
        target: usize,
        image: Whose,
    },
    Status {
        target: usize,
        image: Whose,
        buried: bool,
    },
    Spec {
        target: usize,
        source_ns: Whose,
        image: Whose,
    },
    Mount {
        target: usize,
        from_ns: Whose,
        blob: Whose,
    },
    Push {
        target: usize,
        seed: u8,
    },
    DeleteTag {
        target: usize,
    },
}

fn whose() -> impl Strategy<Value = Whose> {
    prop_oneof![Just(Whose::Own), Just(Whose::Other)]
}

fn op() -> impl Strategy<Value = Op> {
    let target = 0..STREAMS.len();
    prop_oneof![
        (
            target.clone(),
            whose(),
            whose(),
            any::<bool>(),
            prop_oneof![Just(0usize), Just(6), Just(64)]
        )
            .prop_map(|(target, source_ns, image, by_tag, prefix)| Op::Tag {
                target,
                source_ns,
                image,
                by_tag,
                prefix
            }),
        (target.clone(), whose()).prop_map(|(target, image)| Op::Map { target, image }),
        (target.clone(), whose(), any::<bool>()).prop_map(|(target, image, buried)| {
            Op::Status {
                target,
                image,
                buried,
            }
        }),
        (target.clone(), whose(), whose()).prop_map(|(target, source_ns, image)| Op::Spec {
            target,
            source_ns,
            image
        }),
        (target.clone(), whose(), whose()).prop_map(|(target, from_ns, blob)| Op::Mount {
            target,
            from_ns,
            blob
        }),
        (target.clone(), any::<u8>()).prop_map(|(target, seed)| Op::Push { target, seed }),
        target.prop_map(|target| Op::DeleteTag { target }),
    ]
}

struct World {
    s: TestServer,
    secrets: [Secret; 2],
}

impl World {
    fn secret(&self, actor: Actor, whose: Whose) -> &Secret {
        let of = match whose {
            Whose::Own => actor,
            Whose::Other => actor.other(),
        };
        &self.secrets[of as usize]
    }

    fn ns(actor: Actor, whose: Whose) -> &'static str {
        match whose {
            Whose::Own => actor.ns(),
            Whose::Other => actor.other().ns(),
        }
    }

    async fn apply(&self, actor: Actor, op: &Op) {
        let (s, who, ns) = (&self.s, actor.name(), actor.ns());
        match op {
            Op::Tag {
                target,
                source_ns,
                image,
                by_tag,
                prefix,
            } => {
                let digest = &self.secret(actor, *image).manifest;
                let (kind, name) = if *by_tag {
                    ("ImageStreamTag", "secret:v1".to_string())
                } else {
                    let hex = &digest[7..7 + prefix];
                    ("ImageStreamImage", format!("secret@sha256:{hex}"))
                };
                let stream = STREAMS[*target];
                let body = json!({"metadata": {"name": format!("{stream}:t")},
                    "tag": {"name": "t", "from": {"kind": kind,
                        "namespace": Self::ns(actor, *source_ns), "name": name}}});
                send(
                    s,
                    who,
                    Method::PUT,
                    &format!("{API}/namespaces/{ns}/imagestreamtags/{stream}:t"),
                    Some(body),
                )
                .await;
            }
            Op::Map { target, image } => {
                let digest = &self.secret(actor, *image).manifest;
                let body = json!({"metadata": {"name": STREAMS[*target]}, "tag": "m",
                    "image": {"metadata": {"name": digest},
                              "dockerImageReference": format!("x.example/y@{digest}")}});
                send(
                    s,
                    who,
                    Method::POST,
                    &format!("{API}/namespaces/{ns}/imagestreammappings"),
                    Some(body),
                )
                .await;
            }
            Op::Status {
                target,
                image,
                buried,
            } => {
                let path = format!("{API}/namespaces/{ns}/imagestreams/{}", STREAMS[*target]);
                let (status, mut is) = send(s, who, Method::GET, &path, None).await;
                if status != StatusCode::OK {
                    return;
                }
                let digest = &self.secret(actor, *image).manifest;
                let entry = json!({"created": "2026-01-01T00:00:00Z", "image": digest,
                    "dockerImageReference": format!("x.example/y@{digest}"), "generation": 1});
                let mut items = vec![entry];
                if *buried {
                    let own = &self.secret(actor, Whose::Own).manifest;
                    items.insert(
                        0,
                        json!({"created": "2026-01-01T00:00:00Z", "image": own,
                        "dockerImageReference": format!("x.example/y@{own}"), "generation": 1}),
                    );
                }
                is["status"]["tags"] = json!([{"tag": "st", "items": items}]);
                send(s, who, Method::PUT, &format!("{path}/status"), Some(is)).await;
            }
            Op::Spec {
                target,
                source_ns,
                image,
            } => {
                let path = format!("{API}/namespaces/{ns}/imagestreams/{}", STREAMS[*target]);
                let digest = &self.secret(actor, *image).manifest;
                let from = json!({"kind": "ImageStreamImage",
                    "namespace": Self::ns(actor, *source_ns), "name": format!("secret@{digest}")});
                let (status, mut is) = send(s, who, Method::GET, &path, None).await;
                if status == StatusCode::OK {
                    is["spec"]["tags"] = json!([{"name": "sp", "from": from}]);
                    send(s, who, Method::PUT, &path, Some(is)).await;
                } else {
                    let body = json!({"metadata": {"name": STREAMS[*target]},
                        "spec": {"tags": [{"name": "sp", "from": from}]}});
                    send(
                        s,
                        who,
                        Method::POST,
                        &format!("{API}/namespaces/{ns}/imagestreams"),
                        Some(body),
                    )
                    .await;
                }
            }
            Op::Mount {
                target,
                from_ns,
                blob,
            } => {
                let layer = &self.secret(actor, *blob).layer;
                let from = Self::ns(actor, *from_ns);
                as_user(
                    s,
                    who,
                    Method::POST,
                    &format!(
                        "/v2/{ns}/{}/blobs/uploads/?mount={layer}&from={from}/secret",
                        STREAMS[*target]
                    ),
                )
                .send()
                .await
                .unwrap();
            }
            Op::Push { target, seed } => {
                s.push_image_as(
                    Some((who, "user-password-1")),
                    &format!("{ns}/{}", STREAMS[*target]),
                    "p",
                    &format!("{who} {seed}"),
                )
                .await;
            }
            Op::DeleteTag { target } => {
                send(
                    s,
                    who,
                    Method::DELETE,
                    &format!(
                        "{API}/namespaces/{ns}/imagestreamtags/{}:t",
                        STREAMS[*target]
                    ),
                    None,
                )
                .await;
            }
        }
    }
}

async fn world() -> World {
    let s = start().await;
    user(&s, "alice", &[("a", "edit")]).await;
    user(&s, "bob", &[("b", "edit")]).await;
    let mut secrets = Vec::new();
    for actor in [Actor::Alice, Actor::Bob] {
        let repo = format!("{}/secret", actor.ns());
        let (manifest, bytes) = s
            .push_image_as(
                Some((actor.name(), "user-password-1")),
                &repo,
                "v1",
                &format!("{} secret", actor.name()),
            )
            .await;
        let m: Value = serde_json::from_slice(&bytes).unwrap();
        secrets.push(Secret {
            manifest,
            config: m["config"]["digest"].as_str().unwrap().to_string(),
            layer: m["layers"][0]["digest"].as_str().unwrap().to_string(),
        });
    }
    let [alice, bob]: [Secret; 2] = secrets.try_into().ok().unwrap();
    World {
        s,
        secrets: [alice, bob],
    }
}

async fn run(ops: Vec<(bool, Op)>) -> Result<(), TestCaseError> {
    let w = world().await;
    for (alice, op) in &ops {
        let actor = if *alice { Actor::Alice } else { Actor::Bob };
        w.apply(actor, op).await;
    }
    for actor in [Actor::Alice, Actor::Bob] {
        let theirs = w.secret(actor, Whose::Other);
        for stream in STREAMS.iter().chain(["secret"].iter()) {
            let repo = format!("{}/{stream}", actor.ns());
            prop_assert!(
                !can_read(&w.s, actor.name(), &repo, theirs).await,
                "{} reads the other namespace's image through {repo} after {ops:?}",
                actor.name()
            );
        }
    }
    Ok(())
}

#[test]
fn random_calls_never_make_one_namespace_readable_by_the_other() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = proptest::collection::vec((any::<bool>(), op()), 1..12);
    runner.run(&strategy, |ops| rt.block_on(run(ops))).unwrap();
}
