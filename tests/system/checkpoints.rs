//! The fence under the effectively-once guarantee: a stored offset moves only from the value the
//! writer started from, checked by the real PostgreSQL.

use eventline_store::runtime::ReadEvent;
use eventline_store::Error;

use crate::helpers::TestEnv;

async fn advance(env: &TestEnv, expected: Option<i64>, next: i64) -> Result<(), Error> {
    let mut tx = env.store.begin().await.unwrap();
    tx.advance_checkpoint("p", ("topic", 3), expected, next, "test").await?;
    tx.commit().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_checkpoint_moves_only_from_the_position_the_writer_started_from() {
    let env = TestEnv::new().await;
    advance(&env, None, 10).await.expect("the first position is inserted");

    // A writer that believed there was no position yet, or an older one, is fenced.
    for stale in [None, Some(4)] {
        let error = advance(&env, stale, 12).await.unwrap_err();
        assert!(matches!(&error, Error::Fenced { expected, .. } if *expected == stale), "{error}");
        assert_eq!(
            error.to_string(),
            format!("another worker moved p topic/3 (expected position {stale:?}); this worker no longer owns it")
        );
    }
    advance(&env, Some(10), 15).await.expect("the current owner moves it");
    let stored = env.store.load_checkpoints("p", &[("topic".into(), 3), ("topic".into(), 4)]).await.unwrap();
    assert_eq!(stored, [Some(15), None]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_moves_all_its_partitions_in_one_statement_or_none_of_them() {
    use eventline_store::checkpoints::PositionMove;
    let env = TestEnv::new().await;
    let wanted: Vec<(String, i32)> = vec![("a".into(), 0), ("a".into(), 1), ("b".into(), 0)];
    let stored = || env.store.load_checkpoints("p", &wanted);
    let moves = |expected: [Option<i64>; 3], next: i64| -> Vec<PositionMove<'static>> {
        [("a", 0), ("a", 1), ("b", 0)]
            .into_iter()
            .zip(expected)
            .map(|((topic, partition), expected)| PositionMove { topic, partition, expected, next_offset: next })
            .collect()
    };
    let mut listener = eventline_store::sqlx::postgres::PgListener::connect(env.database_url.expose()).await.unwrap();
    listener.listen("eventline_progress").await.unwrap();

    let mut tx = env.store.begin().await.unwrap();
    tx.advance_checkpoints("p", &moves([None, None, None], 5), "test").await.expect("first positions inserted");
    tx.commit().await.unwrap();
    assert_eq!(stored().await.unwrap(), [Some(5), Some(5), Some(5)]);
    let notice = tokio::time::timeout(std::time::Duration::from_secs(5), listener.recv()).await.unwrap().unwrap();
    assert_eq!(notice.payload(), "p", "the progress notice went out with the commit");

    // One partition moved by someone else: the batch is fenced on it, naming it, and moves none.
    for stale in [[Some(5), Some(4), Some(5)], [Some(5), None, Some(5)]] {
        let mut tx = env.store.begin().await.unwrap();
        let error = tx.advance_checkpoints("p", &moves(stale, 9), "test").await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("another worker moved p a/1 (expected position {:?}); this worker no longer owns it", stale[1])
        );
        drop(tx);
        assert_eq!(stored().await.unwrap(), [Some(5), Some(5), Some(5)]);
    }
    let mut tx = env.store.begin().await.unwrap();
    tx.advance_checkpoints("p", &moves([Some(5); 3], 9), "test").await.expect("the owner moves them all");
    tx.commit().await.unwrap();
    assert_eq!(stored().await.unwrap(), [Some(9), Some(9), Some(9)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fenced_transaction_leaves_nothing_behind() {
    let env = TestEnv::new().await;
    advance(&env, None, 10).await.unwrap();
    let mut tx = env.store.begin().await.unwrap();
    let row = eventline_reference::store::account_balances::AccountBalance {
        account_id: "written-by-a-stale-worker".into(),
        owner: "o".into(),
        currency: "EUR".into(),
        balance_minor: 5,
        status: eventline_reference::store::account_balances::AccountStatus::Open,
        events_applied: 1,
        last_event_id: "e".into(),
        last_event_time: chrono::Utc::now(),
        last_deposit_channel: None,
    };
    eventline_reference::store::account_balances::upsert_account_balances(&mut tx, &[row]).await.unwrap();
    assert!(matches!(tx.advance_checkpoint("p", ("topic", 3), Some(9), 11, "test").await, Err(Error::Fenced { .. })));
    drop(tx);
    assert!(
        eventline_reference::store::account_balances::account_balances(&env.store).await.unwrap().is_empty(),
        "the stale worker's rows were rolled back"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn applied_event_ids_are_remembered_for_the_window_only() {
    let env = TestEnv::new().await;
    let ids: Vec<String> = ["e1", "e2", "e3"].map(String::from).to_vec();
    let store = &env.store;
    let claim = |ids: Vec<String>| async move {
        let read: Vec<ReadEvent<'_>> =
            ids.iter().map(|id| ReadEvent { event_id: id, topic: "topic", partition: 0, offset: 1 }).collect();
        let mut tx = store.begin().await.unwrap();
        let claimed_now = tx.claim_event_ids("p", &read).await.unwrap();
        tx.commit().await.unwrap();
        let mut claimed: Vec<String> =
            ids.iter().zip(claimed_now).filter(|(_, now)| *now).map(|(id, _)| id.clone()).collect();
        claimed.sort();
        claimed
    };
    assert_eq!(claim(ids.clone()).await, ids, "new ids are claimed");
    assert_eq!(claim(vec!["e2".into(), "e4".into()]).await, ["e4"], "a claimed id is a copy");

    let window = std::time::Duration::from_secs(3600);
    assert_eq!(env.store.prune_applied("p", window).await.unwrap(), 0, "nothing is older than an hour");
    assert_eq!(env.store.prune_applied("p", std::time::Duration::ZERO).await.unwrap(), 4);
    assert_eq!(claim(vec!["e1".into()]).await, ["e1"], "past the window, an id is new again (documented)");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_copy_of_an_id_in_a_batch_is_claimed_and_the_later_ones_are_not() {
    let env = TestEnv::new().await;
    let claim = |ids: &[&'static str]| {
        let read: Vec<ReadEvent<'static>> = ids
            .iter()
            .zip(0..)
            .map(|(id, offset)| ReadEvent { event_id: id, topic: "topic", partition: 0, offset })
            .collect();
        let store = env.store.clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            let claimed_now = tx.claim_event_ids("p", &read).await.unwrap();
            tx.commit().await.unwrap();
            claimed_now
        }
    };
    // Without a copy the batch is claimed in one plain insert; with one, the careful way.
    assert_eq!(claim(&["a", "b"]).await, [true, true]);
    assert_eq!(claim(&["c", "d", "c", "e", "d", "c"]).await, [true, true, false, true, false, false]);
    assert_eq!(claim(&["f", "a", "g", "f"]).await, [true, false, true, false], "an applied id is a copy too");
    assert_eq!(
        env.psql("SELECT string_agg(\"offset\"::text, ',' ORDER BY \"offset\") FROM eventline_applied_events WHERE projection = 'p'"),
        "0,0,0,1,1,2,3",
        "one row per id (a to g), at its first copy's offset"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_id_remembered_before_digests_is_still_a_copy_after() {
    // The digest migration converted stored ids with this expression; the runtime's digest of
    // the same id must find them, or every event applied before the upgrade would apply again.
    let env = TestEnv::new().await;
    env.psql(
        "INSERT INTO eventline_applied_events (projection, event_digest)
         VALUES ('p', substring(sha256(convert_to('before-the-upgrade', 'UTF8')) FROM 1 FOR 16))",
    );
    let read = [
        ReadEvent { event_id: "before-the-upgrade", topic: "topic", partition: 0, offset: 1 },
        ReadEvent { event_id: "after-the-upgrade", topic: "topic", partition: 0, offset: 2 },
    ];
    let mut tx = env.store.begin().await.unwrap();
    let claimed_now = tx.claim_event_ids("p", &read).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(claimed_now, [false, true]);
    assert_eq!(
        env.psql("SELECT amname FROM pg_class c JOIN pg_am a ON a.oid = c.relam WHERE relname = 'eventline_applied_events_by_age'"),
        "brin",
        "forgetting old ids costs nothing per insert"
    );
}
