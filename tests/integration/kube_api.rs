//! What kubectl needs beyond the objects (issue 16): the server-side Table format with
//! OpenShift's columns, and read-only namespaces filtered to what the caller may view.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::TestServer;
use crate::isolation::{as_user, send, start, user};

const API: &str = "/apis/image.openshift.io/v1";
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;\
                     v=v1beta1;g=meta.k8s.io,application/json";

async fn table(s: &TestServer, path: &str) -> Value {
    let r = s
        .req(Method::GET, path)
        .header("accept", TABLE)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

fn column_names(t: &Value) -> Vec<String> {
    t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn tables_have_openshift_columns() {
    let s = TestServer::start().await;
    let (digest, _) = s.push_image("ns/app", "v1", "a").await;
    let host = s.base.trim_start_matches("http://").to_string();

    let t = table(&s, &format!("{API}/namespaces/ns/imagestreams")).await;
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(
        column_names(&t),
        ["Name", "Image Repository", "Tags", "Updated"]
    );
    let cells = &t["rows"][0]["cells"];
    assert_eq!(cells[0], "app");
    assert_eq!(cells[1], format!("{host}/ns/app"));
    assert_eq!(cells[2], "v1");
    assert!(cells[3].as_str().unwrap().ends_with(" ago"), "{cells}");
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(t["rows"][0]["object"]["metadata"]["namespace"], "ns");
    assert!(t["metadata"]["resourceVersion"].is_string());
    // One object, and the same cells.
    let one = table(&s, &format!("{API}/namespaces/ns/imagestreams/app")).await;
    let cells = |t: &Value| t["rows"][0]["cells"].as_array().unwrap()[..3].to_vec();
    assert_eq!(cells(&one), cells(&t));

    let t = table(&s, &format!("{API}/namespaces/ns/imagestreamtags")).await;
    assert_eq!(
        column_names(&t),
        ["Name", "Image Reference", "Updated", "Image Name"]
    );
    assert_eq!(t["columnDefinitions"][3]["priority"], 1, "wide only");
    assert_eq!(t["rows"][0]["cells"][0], "app:v1");
    assert_eq!(t["rows"][0]["cells"][1], format!("{host}/ns/app@{digest}"));
    assert_eq!(t["rows"][0]["cells"][3], digest.as_str());
    let t = table(&s, &format!("{API}/images")).await;
    assert_eq!(column_names(&t), ["Name", "Image Reference"]);
    assert_eq!(t["rows"][0]["cells"][0], digest.as_str());
    // v1beta1 for a client that only takes that; plain JSON without the parameter.
    let r = s
        .req(Method::GET, &format!("{API}/images"))
        .header(
            "accept",
            "application/json;as=Table;v=v1beta1;g=meta.k8s.io",
        )
        .send()
        .await
        .unwrap();
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1beta1");
    let list: Value = s.get(&format!("{API}/images")).await.json().await.unwrap();
    assert_eq!(list["kind"], "ImageList");

    // A watch for kubectl delivers rows.
    let r = s
        .req(
            Method::GET,
            &format!("{API}/namespaces/ns/imagestreams?watch=true&timeoutSeconds=1"),
        )
        .header("accept", TABLE)
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    let event: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(event["type"], "ADDED");
    assert_eq!(event["object"]["kind"], "Table");
    assert_eq!(event["object"]["rows"][0]["cells"][0], "app");
}

#[tokio::test]
async fn namespaces_are_those_the_caller_may_view() {
    let s = start().await;
    user(&s, "eve", &[("a", "view")]).await;
    for ns in ["a", "b"] {
        let (status, _) = send(
            &s,
            "admin",
            Method::POST,
            &format!("{API}/namespaces/{ns}/imagestreams"),
            Some(json!({"metadata": {"name": "x"}})),
        )
        .await;
        assert!(status.is_success());
    }
    // A namespace holding only a secret is one too.
    let (status, _) = send(
        &s,
        "admin",
        Method::POST,
        "/api/v1/namespaces/c/secrets",
        Some(json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {}})),
    )
    .await;
    assert!(status.is_success());

    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (status, list) = send(&s, "admin", Method::GET, "/api/v1/namespaces", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["kind"], "NamespaceList");
    assert_eq!(names(&list), ["a", "b", "c"]);
    let (_, ns) = send(&s, "admin", Method::GET, "/api/v1/namespaces/b", None).await;
    assert_eq!(ns["kind"], "Namespace");
    assert_eq!(ns["status"]["phase"], "Active");
    let (status, missing) = send(&s, "admin", Method::GET, "/api/v1/namespaces/zz", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing["message"], "namespaces \"zz\" not found");

    // eve sees a only; b (which exists) and zz (which does not) are refused alike.
    let (_, list) = send(&s, "eve", Method::GET, "/api/v1/namespaces", None).await;
    assert_eq!(names(&list), ["a"]);
    let (status, _) = send(&s, "eve", Method::GET, "/api/v1/namespaces/a", None).await;
    assert_eq!(status, StatusCode::OK);
    let (sb, b) = send(&s, "eve", Method::GET, "/api/v1/namespaces/b", None).await;
    let (sz, z) = send(&s, "eve", Method::GET, "/api/v1/namespaces/zz", None).await;
    assert_eq!((sb, sz), (StatusCode::FORBIDDEN, StatusCode::FORBIDDEN));
    assert_eq!(
        b["message"].as_str().unwrap().replace("\"b\"", "X"),
        z["message"].as_str().unwrap().replace("\"zz\"", "X")
    );
    // Anonymous callers are asked to authenticate; nobody may write.
    let r = s.get("/api/v1/namespaces").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = as_user(&s, "admin", Method::DELETE, "/api/v1/namespaces/a")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    // Discovery names the resource, so `kubectl get ns` resolves it.
    let (_, core) = send(&s, "admin", Method::GET, "/api/v1", None).await;
    let ns = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "namespaces")
        .cloned()
        .unwrap();
    assert_eq!(ns["shortNames"], json!(["ns"]));
    assert_eq!(ns["verbs"], json!(["get", "list"]));
}
