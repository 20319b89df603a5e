//! Task changes on a real `inbound.db`: scheduling, refusals, pause and resume, run-now, and
//! the follow-up run of a recurring task.

use super::*;
use crate::schedule::follow_up;
use protocol::schedule::Recurrence;
use protocol::schema::open_inbound_writer;

fn db() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let conn = open_inbound_writer(&dir.path().join("inbound.db")).unwrap();
    (dir, conn)
}

fn schedule(task_id: &str, schedule: Schedule) -> TaskChange {
    TaskChange::Schedule(ScheduleTask {
        task_id: task_id.into(),
        prompt: "water the plants".into(),
        schedule,
    })
}

fn hourly() -> Schedule {
    Schedule::Cron(Recurrence {
        cron: "0 * * * *".into(),
        timezone: None,
    })
}

const NOW: i64 = 1_741_595_400_000; // 2025-03-10T08:30:00Z

fn ok(conn: &Connection, change: TaskChange) -> Applied {
    apply(conn, &change, NOW).unwrap().unwrap()
}

fn refused(conn: &Connection, change: TaskChange) -> String {
    apply(conn, &change, NOW).unwrap().unwrap_err().to_string()
}

#[test]
fn schedule_pause_resume_cancel() {
    let (_dir, conn) = db();
    let applied = ok(&conn, schedule("t-1", Schedule::At(NOW + 60_000)));
    assert_eq!(applied.next_run_at, Some(NOW + 60_000));
    assert!(!applied.due_now);
    assert!(refused(&conn, schedule("t-1", Schedule::At(NOW))).contains("already exists"));
    let past = ok(&conn, schedule("t-2", Schedule::At(NOW - 1)));
    assert!(past.due_now, "a time in the past runs at once");

    let paused = ok(&conn, TaskChange::Pause("t-1".into()));
    assert_eq!(paused.next_run_at, None);
    assert_eq!(
        series::open_rows(&conn, "t-1").unwrap()[0].status,
        InboundStatus::Paused
    );
    let resumed = ok(&conn, TaskChange::Resume("t-1".into()));
    assert_eq!(resumed.next_run_at, Some(NOW + 60_000));
    ok(&conn, TaskChange::Cancel("t-1".into()));
    assert!(refused(&conn, TaskChange::Pause("t-1".into())).contains("no scheduled task"));
    assert!(refused(&conn, TaskChange::RunNow("t-9".into())).contains("\"t-9\""));
    let zone = refused(
        &conn,
        schedule(
            "t-3",
            Schedule::Cron(Recurrence {
                cron: "0 9 * * *".into(),
                timezone: Some("Nowhere/Atlantis".into()),
            }),
        ),
    );
    assert!(zone.contains("not a known IANA timezone"), "{zone}");
    assert!(series::series_rows(&conn, "t-3").unwrap().is_empty());
}

#[test]
fn update_and_run_now() {
    let (_dir, conn) = db();
    ok(&conn, schedule("t-1", hourly()));
    let updated = ok(
        &conn,
        TaskChange::Update(UpdateTask {
            task_id: "t-1".into(),
            prompt: Some("feed the cat".into()),
            schedule: Some(Schedule::At(NOW + 5_000)),
        }),
    );
    assert_eq!(updated.next_run_at, Some(NOW + 5_000));
    let row = &series::open_rows(&conn, "t-1").unwrap()[0];
    assert_eq!(row.recurrence, None, "an `at` makes it a one-off");
    assert!(row.content.contains("feed the cat"));
    // A one-off task is moved to now.
    let now = ok(&conn, TaskChange::RunNow("t-1".into()));
    assert!(now.due_now);
    assert_eq!(series::open_rows(&conn, "t-1").unwrap().len(), 1);
    // A recurring one gets an extra run and keeps its schedule.
    ok(&conn, schedule("t-2", hourly()));
    ok(&conn, TaskChange::RunNow("t-2".into()));
    let open = series::open_rows(&conn, "t-2").unwrap();
    assert_eq!(open.len(), 2);
    assert_eq!(
        open.iter().filter(|row| row.recurrence.is_some()).count(),
        1
    );
}

#[test]
fn a_finished_recurring_run_schedules_the_next_one() {
    let (_dir, conn) = db();
    ok(&conn, schedule("t-1", hourly()));
    let first = series::open_rows(&conn, "t-1").unwrap().remove(0);
    assert_eq!(first.process_after, Some(NOW + 30 * 60_000));
    protocol::inbound::set_status(&conn, &first.id, InboundStatus::Completed).unwrap();
    // Finished a little late: the next run is an hour after the scheduled one.
    let next = follow_up(&conn, &first, NOW + 31 * 60_000).unwrap();
    assert_eq!(next, Some(NOW + 90 * 60_000));
    // Only once, however often the completion is seen.
    assert_eq!(follow_up(&conn, &first, NOW + 31 * 60_000).unwrap(), None);
    let open = series::open_rows(&conn, "t-1").unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].content, first.content);
    // One-off rows and other kinds have no follow-up.
    ok(&conn, schedule("t-2", Schedule::At(NOW)));
    let once = series::open_rows(&conn, "t-2").unwrap().remove(0);
    assert_eq!(follow_up(&conn, &once, NOW).unwrap(), None);
}
