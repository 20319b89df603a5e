//! `crabpot egress log`: the newest egress attempts of the host's containers, allowed or
//! refused, optionally of one session or one agent group (`egress_log` in the central DB,
//! written by the proxy's egress recorder).

use super::{Admin, Reply, parse, to_value, unknown_verb};
use crate::db::central::egress_log::{self, EgressLogQuery};

pub(super) async fn handle(admin: &Admin, verb: &str, body: serde_json::Value) -> Reply {
    match verb {
        "log" => {
            let query: EgressLogQuery = parse(body)?;
            to_value(
                &admin
                    .db(move |tx| egress_log::list_attempts(tx, &query))
                    .await?,
            )
        }
        _ => Err(unknown_verb("egress", verb)),
    }
}
