//! Telling the cluster refusing access (permanent) from an outage (retried).

use rdkafka::error::KafkaError;

use crate::BusError;

/// The reason when `e` is the cluster refusing access (authentication, or an ACL on a
/// topic, group or the cluster): permanent, retrying cannot help.
pub(super) fn refusal(e: &KafkaError) -> Option<String> {
    use rdkafka::types::RDKafkaErrorCode as C;
    let code = e.rdkafka_error_code()?;
    matches!(
        code,
        C::Authentication
            | C::SaslAuthenticationFailed
            | C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed
            | C::DelegationTokenAuthorizationFailed
    )
    .then(|| code.to_string())
}

/// `what: error` as a backend error, or, when the cluster refused access, a permanent
/// [`BusError::Denied`] naming the brokers and the reason.
pub(super) fn backend<'a>(
    brokers: &'a str,
    what: &'a str,
) -> impl FnOnce(KafkaError) -> BusError + 'a {
    move |e| match refusal(&e) {
        Some(reason) => BusError::Denied(format!(
            "Kafka at {brokers} refused access ({what}): {reason} (check the ACLs of this client)"
        )),
        None => BusError::Backend(format!("{what}: {e}")),
    }
}
