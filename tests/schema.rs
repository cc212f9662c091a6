//! The protocol's JSON Schema: the committed files under docs/protocol/ are exactly what the
//! wire types generate (`inspectord schema`), and they accept what the daemon and its clients
//! really send and reject what they must not. (Every socket line the other tests read is
//! validated against it in `common::socket_lines`.)

mod common;

use serde_json::json;

fn generated(which: &str) -> String {
    let out = common::command(common::repo(), ["schema", which])
        .output()
        .unwrap();
    assert!(out.status.success(), "inspectord schema {which} failed");
    String::from_utf8(out.stdout).expect("UTF-8 schema")
}

#[test]
fn the_committed_schemas_are_the_generated_ones() {
    for (which, file) in [
        ("messages", "messages.schema.json"),
        ("commands", "commands.schema.json"),
    ] {
        let path = common::repo().join("docs/protocol").join(file);
        let committed = std::fs::read_to_string(&path).unwrap();
        assert!(
            committed == generated(which),
            "{} differs from `inspectord schema {which}`: regenerate it with\n    cargo run -- schema {which} > docs/protocol/{file}",
            path.display()
        );
    }
}

#[test]
fn commands_are_checked_strictly() {
    for ok in [
        json!({"type": "trigger", "part_id": "4711", "id": 7}),
        json!({"type": "trigger"}),
        json!({"type": "subscribe", "from_seq": 0, "id": "resume"}),
        json!({"type": "ack", "seq": 12}),
        json!({"type": "ping", "v": 2}),
        json!({"type": "status"}),
        json!({"type": "report", "event": "plc_link_lost", "source": "bridge-modbus", "reason": "no request for 3 s"}),
    ] {
        common::assert_valid_command(&ok);
    }
    for bad in [
        json!({"type": "trigger", "partid": "4711"}),
        json!({"type": "trigger", "part_id": 4711}),
        json!({"type": "subscribe"}),
        json!({"type": "subscribe", "from_seq": -1}),
        json!({"type": "ack", "seq": "12"}),
        json!({"type": "reboot"}),
        json!({"type": "report", "event": "camera_lost", "source": "x"}),
        json!({"type": "ping", "id": 1.5}),
    ] {
        let caught = std::panic::catch_unwind(|| common::assert_valid_command(&bad));
        assert!(caught.is_err(), "the schema accepts a bad command: {bad}");
    }
}

#[test]
fn messages_must_carry_their_required_fields() {
    let bad = [
        json!({"type": "verdict", "v": 2, "seq": 1}),
        json!({"type": "verdict", "v": 2, "seq": 1, "source": "replay", "frame": "a.png",
               "captured_at": "2026-11-29T00:00:00.000000Z", "verdict": "maybe", "score": null,
               "threshold": null, "soart3": null, "reference_index": null, "latency_us": 1,
               "model_sha256": "ab", "reference_set": "cd"}),
        json!({"type": "trigger_ack", "v": 2}),
        json!({"type": "gap", "v": 2, "from_seq": 1, "to_seq": 3}),
        json!({"type": "no_such_message", "v": 2}),
    ];
    for message in bad {
        let caught = std::panic::catch_unwind(|| common::assert_valid_message(&message));
        assert!(
            caught.is_err(),
            "the schema accepts a bad message: {message}"
        );
    }
    common::assert_valid_message(
        &json!({"type": "gap", "v": 2, "from_seq": 1, "to_seq": 3, "count": 3}),
    );
}
