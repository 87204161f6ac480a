//! The saved profile (SPEC §8 `POST /v1/profile`): [`ApplyProfile`] stores it in the daemon
//! dir and sends it now when the link is open; it is re-sent after every `hello_ack`.

use actix::prelude::*;

use super::super::msg::*;
use super::super::{frames, BrokerConnection};

impl BrokerConnection {
    /// Sends the `set_*` frames of `p`; returns the names of the fields sent.
    pub(in crate::broker) fn send_profile(&mut self, p: &Profile) -> Vec<&'static str> {
        let names = p.field_names();
        for frame in frames::profile_frames(p) {
            self.send_text(frame);
        }
        names
    }
}

impl Handler<ApplyProfile> for BrokerConnection {
    type Result = MessageResult<ApplyProfile>;

    fn handle(&mut self, msg: ApplyProfile, _ctx: &mut Context<Self>) -> Self::Result {
        let before = self.profile.clone();
        self.profile.merge(&msg.profile);
        match serde_json::to_vec(&self.profile) {
            Ok(bytes) => {
                if let Err(e) = crate::files::write_private_file(&self.cfg.profile_path, &bytes) {
                    // All or nothing (SPEC §5.1): a profile that cannot be kept is not applied.
                    log::error!("mesh {}: saving profile failed: {e}", self.slug());
                    self.profile = before;
                    let fault = match &e {
                        crate::files::FilesError::Io { source, .. } => {
                            crate::storage::io_fault(source)
                        }
                        _ => crate::storage::StorageFault::Io,
                    };
                    return MessageResult(ProfileApplied {
                        applied: Vec::new(),
                        pending: false,
                        not_saved: Some(fault),
                    });
                }
            }
            Err(e) => log::error!("mesh {}: encoding profile failed: {e}", self.slug()),
        }
        if self.hello_acked {
            let applied = self.send_profile(&msg.profile);
            MessageResult(ProfileApplied {
                applied,
                pending: false,
                not_saved: None,
            })
        } else {
            MessageResult(ProfileApplied {
                applied: Vec::new(),
                pending: true,
                not_saved: None,
            })
        }
    }
}
