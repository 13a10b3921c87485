//! The status page in headless Chromium, against `cairn serve` with real snapshots: the login
//! form, one row per component with the numbers `status` gives, the size history, the
//! operator's "backup now" (the job runs, the page shows its new snapshot), a read-only
//! login without buttons, a wrong token refused; a screenshot under the test's folder.

mod common;

use common::browser::Browser;
use common::serve::{OPERATOR, READER, Server, TOKENS};
use common::site::Site;
use common::{random_bytes, write};

#[test]
fn the_status_page_shows_every_component_and_backs_up_on_a_click() {
    let Some(mut b) = Browser::start() else {
        return;
    };
    let s = Site::new(&format!(
        "[components.files]\npaths = [\"files\"]\n[components.media]\npaths = [\"media\"]\n[components.never]\npaths = [\"never\"]\n[alerts]\nsize_change = 1000\n{TOKENS}"
    ));
    // Real snapshots of growing sizes (a history to draw), one component never backed up.
    write(&s.p("never"), "x", b"x");
    for i in 0..4u64 {
        write(&s.p("files"), &format!("f{i}"), &random_bytes(i, 20_000));
        write(
            &s.p("media"),
            &format!("m{i}"),
            &random_bytes(50 + i, 100_000),
        );
        s.json(&["run", "files", "media"], 0);
    }
    let srv = Server::start(&s, &["--no-schedules"]);
    let (_, st) = srv.json("GET", "/v1/status", Some(READER), None);

    // Without a token: the login form. A wrong token is refused.
    b.goto(&srv.base);
    b.wait_for("document.querySelector('#login')");
    b.eval("document.querySelector('#token').value = 'wrong-token-0123456789'; document.querySelector('#login').submit(); 1");
    b.wait_for("document.querySelector('#error')");
    assert_eq!(
        b.eval("document.querySelector('#components') === null"),
        true
    );

    // The operator logs in and sees one row per component with status's numbers.
    b.eval(&format!(
        "document.querySelector('#token').value = '{OPERATOR}'; document.querySelector('#login').submit(); 1"
    ));
    b.wait_for("document.querySelector('#components')");
    assert_eq!(
        b.eval("document.querySelector('#who').textContent"),
        "deployer"
    );
    let rows = b.eval(
        "JSON.stringify([...document.querySelectorAll('#components tbody tr')].map(r => ({
            component: r.dataset.component, cls: r.className,
            snapshots: +r.querySelector('.snapshots').textContent,
            bytes: +r.querySelector('.size').dataset.bytes,
            last: r.querySelector('.last').textContent,
            points: r.querySelector('svg polyline') ? r.querySelector('svg polyline').getAttribute('points').split(' ').length : 0,
            buttons: r.querySelectorAll('button').length })))",
    );
    let rows: serde_json::Value = serde_json::from_str(rows.as_str().unwrap()).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 3, "{rows}");
    for (row, c) in rows
        .as_array()
        .unwrap()
        .iter()
        .zip(st["components"].as_array().unwrap())
    {
        assert_eq!(row["component"], c["component"]);
        assert_eq!(row["snapshots"], c["snapshots"], "{row} vs {c}");
        let size = c["last_success"]["size"].as_u64().unwrap_or(0);
        assert_eq!(row["bytes"].as_u64(), Some(size), "{row}");
        assert_eq!(
            row["buttons"], 3,
            "an operator has backup, verify and drill"
        );
        // A breached limit colours the row.
        let alert = !c["breaches"].as_array().unwrap().is_empty();
        assert_eq!(row["cls"] == "alert", alert, "{row} vs {c}");
    }
    assert_eq!(rows[0]["points"], 4, "four sizes in the history: {rows}");
    assert_eq!(rows[0]["cls"], "ok", "{rows}");
    assert_eq!(rows[2]["last"], "never");
    assert_eq!(rows[2]["cls"], "alert", "never backed up: stale");

    // "backup now" on a component: the job runs, the page reloads itself and shows it.
    write(&s.p("files"), "new", &random_bytes(77, 30_000));
    b.eval("document.querySelector('button.backup[data-component=files]').click(); 1");
    b.wait_for("document.querySelector('#started')");
    b.wait_for(
        "document.querySelector('#jobs tbody tr') && document.querySelector('#jobs tbody tr').dataset.state === 'succeeded' && +document.querySelector('tr[data-component=files] .snapshots').textContent === 5",
    );
    let (_, list) = srv.json("GET", "/v1/backups?component=files", Some(READER), None);
    assert_eq!(list.as_array().unwrap().len(), 5);
    assert_eq!(list[0]["reason"], "status page: backup now");
    let shot = s.p("status.png");
    b.screenshot(&shot);
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );

    // A read-only token sees the page without buttons.
    b.eval("document.querySelector('form[action=\"/logout\"]').submit(); 1");
    b.wait_for("document.querySelector('#login')");
    b.eval(&format!(
        "document.querySelector('#token').value = '{READER}'; document.querySelector('#login').submit(); 1"
    ));
    b.wait_for("document.querySelector('#components')");
    assert_eq!(
        b.eval("document.querySelectorAll('#components button').length"),
        0
    );
    assert_eq!(srv.terminate(), Some(0));
}
