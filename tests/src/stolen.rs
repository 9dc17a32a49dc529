//! What a co-recipient of another component's session learns from one of its full envelopes,
//! derived as an attacker following docs/envelope.md would (the wrap info built by hand, not
//! by the library's sealer): the attack tests' shared starting point.

use ozone_security::envelope::{
    import_session_keys, record_digest, sender_tags_len, unwrap_session_keys, HeaderView,
    PublicKey, SecretKeyPair, SESSION_ID_LEN,
};

/// One recipient's view of a stolen session.
#[derive(Debug, Clone)]
pub struct StolenSession {
    /// The session's data key (every recipient holds it).
    pub data_key: [u8; 32],
    /// This recipient's own sender-tag key (only it and the sender hold it).
    pub tag_key: [u8; 32],
    /// This recipient's place in the session's recipient order.
    pub position: usize,
    /// The session record's digest (what compact envelopes bind instead of the header).
    pub record_digest: [u8; 32],
    /// How many bytes of sender tags the session's envelopes end in.
    pub tags_len: usize,
    pub session_id: [u8; SESSION_ID_LEN],
}

/// Derives `me`'s keys of the session `full` (a full envelope from `sender`) opens.
pub fn steal_session(
    full: &[u8],
    me: &SecretKeyPair,
    sender: &PublicKey,
) -> anyhow::Result<StolenSession> {
    let (view, _) = HeaderView::parse(full)?;
    let record = view.establishment().record()?;
    let my_kid = me.public().kid();
    let (position, entry) = view
        .recipients()
        .enumerate()
        .find(|(_, r)| r.kid == my_kid)
        .ok_or_else(|| anyhow::anyhow!("not a recipient"))?;
    let mut info = b"ozone/envelope/v4/wrap".to_vec();
    info.extend_from_slice(&view.session_id);
    info.push(view.sender.len() as u8);
    info.extend_from_slice(view.sender.as_bytes());
    info.push(view.route.len() as u8);
    info.extend_from_slice(view.route.as_bytes());
    info.extend_from_slice(&my_kid.0);
    let (data, tag) = match (position, entry.wrapped) {
        (0, None) => import_session_keys(me, sender, &info, &entry.enc)?,
        (_, Some(w)) => unwrap_session_keys(me, sender, &info, &entry.enc, &w)?,
        _ => anyhow::bail!("malformed recipient entry"),
    };
    Ok(StolenSession {
        data_key: *data,
        tag_key: *tag,
        position,
        record_digest: record_digest(&record),
        tags_len: sender_tags_len(view.recipient_count()),
        session_id: view.session_id,
    })
}
