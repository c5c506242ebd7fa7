//! The same behaviour from every kind of account: a local folder, Azurite and an S3 server
//! (moto). `scripts/test.sh` starts the servers and sets CACHEPLANE_TEST_AZURITE and
//! CACHEPLANE_TEST_S3; without them these tests fail rather than skip.

use std::sync::{Arc, Mutex};

use blob::{Account, BlobError, BlobEvent, EventKind, Store};
use bytes::Bytes;

fn accounts() -> Vec<(&'static str, Account)> {
    let dir = std::env::temp_dir().join(format!("cacheplane-blob-{}", std::process::id()));
    let env = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: run scripts/test.sh, which starts Azurite and the S3 server")
        })
    };
    vec![
        ("local", Account::Local { path: dir }),
        (
            "azurite",
            Account::parse(&env("CACHEPLANE_TEST_AZURITE")).unwrap(),
        ),
        ("s3", Account::parse(&env("CACHEPLANE_TEST_S3")).unwrap()),
    ]
}

fn open(account: &Account, prefix: &str) -> (Store, Arc<Mutex<Vec<BlobEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let store = Store::open(
        account,
        prefix,
        Arc::new(move |e| sink.lock().unwrap().push(e)),
    )
    .unwrap();
    (store, events)
}

fn unique(name: &str) -> String {
    format!(
        "{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[tokio::test]
async fn conditional_writes_reads_lists_and_deletes() {
    for (kind, account) in accounts() {
        let (store, events) = open(&account, &unique("cond"));
        let v1 = store
            .put_if("m/manifest", Bytes::from_static(b"one"), None)
            .await
            .unwrap();
        let again = store
            .put_if("m/manifest", Bytes::from_static(b"two"), None)
            .await;
        assert!(
            matches!(again, Err(BlobError::Conflict { .. })),
            "{kind}: create over an existing key: {again:?}"
        );
        let (bytes, seen) = store.get("m/manifest").await.unwrap().unwrap();
        assert_eq!(&bytes[..], b"one", "{kind}");
        assert_eq!(seen.e_tag, v1.e_tag, "{kind}");
        let v2 = store
            .put_if(
                "m/manifest",
                Bytes::from_static(b"three"),
                Some((v1.clone(), 3)),
            )
            .await
            .unwrap();
        let stale = store
            .put_if("m/manifest", Bytes::from_static(b"four"), Some((v1, 5)))
            .await;
        assert!(
            matches!(stale, Err(BlobError::Conflict { .. })),
            "{kind}: stale version: {stale:?}"
        );
        assert_ne!(v2.e_tag, None, "{kind}");
        store
            .put_new("m/seg.1", Bytes::from(vec![7u8; 1000]))
            .await
            .unwrap();
        store
            .put_new("m/seg.2", Bytes::from(vec![8u8; 10]))
            .await
            .unwrap();
        let listed = store.list("m").await.unwrap();
        assert_eq!(
            listed,
            vec![
                ("m/manifest".to_string(), 5),
                ("m/seg.1".to_string(), 1000),
                ("m/seg.2".to_string(), 10)
            ],
            "{kind}"
        );
        store.delete("m/seg.1", 1000).await.unwrap();
        assert_eq!(store.get("m/seg.1").await.unwrap(), None, "{kind}");
        assert_eq!(store.size("m/seg.2").await.unwrap(), Some(10), "{kind}");
        let got: Vec<(EventKind, u64)> = events
            .lock()
            .unwrap()
            .iter()
            .map(|e| (e.kind, e.bytes))
            .collect();
        assert_eq!(
            got,
            vec![
                (EventKind::Write, 3),
                (EventKind::Overwrite, 3),
                (EventKind::Write, 5),
                (EventKind::Write, 1000),
                (EventKind::Write, 10),
                (EventKind::Delete, 1000),
            ],
            "{kind}"
        );
        for e in events.lock().unwrap().iter() {
            assert_eq!(e.account, account.display_name(), "{kind}");
            assert!(
                e.key.starts_with("cond-") && e.key.contains("/m/"),
                "{kind}: full key {}",
                e.key
            );
        }
    }
}

#[tokio::test]
async fn multipart_uploads_stream_verify_and_abort() {
    for (kind, account) in accounts() {
        let (store, events) = open(&account, &unique("mp"));
        let mut up = store.upload("rdb/big.rdb").await.unwrap();
        let mut expected = Vec::new();
        for i in 0..20u32 {
            let chunk: Vec<u8> = (0..1024 * 1024)
                .map(|j| (i as usize * 31 + j) as u8)
                .collect();
            up.write(&chunk).await.unwrap();
            expected.extend_from_slice(&chunk);
        }
        assert_eq!(up.finish().await.unwrap(), expected.len() as u64, "{kind}");
        let mut downloaded = Vec::new();
        assert_eq!(
            store
                .download("rdb/big.rdb", &mut downloaded)
                .await
                .unwrap(),
            expected.len() as u64
        );
        assert!(downloaded == expected, "{kind}: downloaded bytes differ");
        // An abandoned upload leaves nothing behind under its key.
        let mut up = store.upload("rdb/abandoned.rdb").await.unwrap();
        up.write(&vec![1u8; 6 * 1024 * 1024]).await.unwrap();
        up.abort().await;
        assert_eq!(
            store.size("rdb/abandoned.rdb").await.unwrap(),
            None,
            "{kind}"
        );
        let writes: Vec<u64> = events.lock().unwrap().iter().map(|e| e.bytes).collect();
        assert_eq!(
            writes,
            vec![expected.len() as u64],
            "{kind}: one event per completed upload"
        );
    }
}

#[test]
fn unreachable_stores_fail_with_the_account_named() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let account = Account::parse("Provider=S3;Endpoint=http://127.0.0.1:9;Bucket=nothere;AccessKeyId=x;SecretAccessKey=hidden-secret").unwrap();
    let (store, _) = open(&account, "p");
    let err = rt
        .block_on(store.put_new("k", Bytes::from_static(b"x")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("s3:nothere@http://127.0.0.1:9"), "{err}");
    assert!(!err.contains("hidden-secret"), "{err}");
}
