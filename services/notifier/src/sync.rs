//! Sync notices (`sync.succeeded`, `sync.failed`, `sync.lagging`) from the planner's sync
//! groups, emailed to their recipients.

use replicator_proto::names;

use crate::{NotifierConfig, email};

/// Tell a sync notice's recipients by email (when `notifications.email` is configured; the
/// notice is logged either way). Never fails the sync.
pub(crate) async fn notice(key: &str, payload: &[u8], config: &NotifierConfig) {
    let Ok(notice) = replicator_proto::decode::<replicator_proto::SyncNotice>(payload) else {
        tracing::warn!(%key, "undecodable sync notice ignored");
        return;
    };
    let what = match key {
        names::events::SYNC_SUCCEEDED => "is at a new consistent cut",
        names::events::SYNC_LAGGING => "is behind its RPO",
        _ => "failed to sync; its previous cut is kept",
    };
    let cut = notice
        .cut_at
        .map(|c| c.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| "none yet".into());
    let subject = format!("[replicator] sync group {} {what}", notice.group);
    let body = format!(
        "Sync group {} {what}.\nConsistent cut: {cut}\n{}",
        notice.group,
        notice.message.as_deref().unwrap_or("")
    );
    tracing::info!(group = %notice.group, %key, recipients = ?notice.recipients, "sync notice");
    let (Some(email), false) = (&config.email, notice.recipients.is_empty()) else {
        return;
    };
    let transport = match email::transport(&email.smtp) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(group = %notice.group, error = %e, "cannot send the sync notice");
            return;
        }
    };
    let (result, _) = config
        .retry
        .retry(
            || {
                email::send(
                    &transport,
                    &email.smtp.host,
                    &email.from,
                    &notice.recipients,
                    &subject,
                    &body,
                    notice.header.run_id,
                )
            },
            |e, delay| tracing::warn!(error = %e, delay_ms = delay.as_millis() as u64, "email delivery failed, retrying"),
        )
        .await;
    if let Err(e) = result {
        tracing::warn!(group = %notice.group, error = %e, "cannot send the sync notice");
    }
}
