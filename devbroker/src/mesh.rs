//! `dev-mesh create` and `dev-mesh revoke` (SPEC §11): creating or extending the one mesh of a
//! state directory, minting members with fresh ed25519 keys, and writing each member a complete
//! claudemesh config directory (`OUT/<name>/config.json`, BROKER-PROTOCOL §8.3).
//!
//! Invariants:
//! - A state directory holds at most one mesh; `create` reuses it when it exists.
//! - Member names are unique in the mesh and safe as directory names.
//! - Config directories are 0700 and `config.json` is 0600, written through a `.tmp` file and
//!   renamed, so a reader never sees a partial file. Secret keys are written only there; the
//!   state database holds public keys only, like the real broker.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use claudemesh_actors::crypto::MemberKeys;
use claudemesh_actors::time::{iso_from_ms, now_ms};
use serde::Serialize;
use serde_json::json;

use super::error::DevBrokerError;
use super::ids::row_id;
use super::state::{self, MemberRow, MeshRow};

/// Name and slug of a mesh created by `dev-mesh create`.
pub const MESH_SLUG: &str = "dev-mesh";

/// What `dev-mesh create` made; serialised as its one JSON output line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MeshCreated {
    /// `mesh.id` of the (new or existing) mesh.
    pub mesh_id: String,
    /// The members created by this call, in the order given.
    pub members: Vec<CreatedMember>,
}

/// One member created by `dev-mesh create`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CreatedMember {
    /// The name given on the command line (also its display name).
    pub name: String,
    /// `member.id`.
    pub member_id: String,
    /// Lowercase 64-hex ed25519 public key.
    pub pubkey: String,
    /// `OUT/<name>`, absolute: use it as `CLAUDEMESH_CONFIG_DIR`.
    pub config_dir: PathBuf,
}

/// Creates the mesh of `state_dir` if needed, adds one member per name with fresh keys, and
/// writes `out_dir/<name>/config.json` for each. Fails without writing anything when a name is
/// invalid, repeated, or already a member.
pub fn create_mesh(
    state_dir: &Path,
    broker_url: &str,
    names: &[String],
    out_dir: &Path,
) -> Result<MeshCreated, DevBrokerError> {
    if !(broker_url.starts_with("ws://") || broker_url.starts_with("wss://")) {
        return Err(DevBrokerError::InvalidBrokerUrl {
            url: broker_url.to_owned(),
        });
    }
    validate_names(names)?;
    let out_dir = absolute(out_dir)?;
    let mut conn = state::open(state_dir)?;
    let now = now_ms();
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(state::sql("begin create"))?;
    let mesh = match state::mesh(&tx)? {
        Some(mesh) => mesh,
        None => {
            let mesh = MeshRow {
                id: row_id(),
                name: MESH_SLUG.to_owned(),
                slug: MESH_SLUG.to_owned(),
            };
            state::insert_mesh(&tx, &mesh, now)?;
            mesh
        }
    };
    let existing = state::members(&tx, &mesh.id)?;
    if let Some(taken) = names
        .iter()
        .find(|n| existing.iter().any(|m| &m.name == *n))
    {
        return Err(DevBrokerError::MemberExists {
            name: taken.clone(),
        });
    }
    let mut created = Vec::with_capacity(names.len());
    let mut configs = Vec::with_capacity(names.len());
    for name in names {
        let keys = MemberKeys::generate();
        let member = MemberRow {
            id: row_id(),
            mesh_id: mesh.id.clone(),
            name: name.clone(),
            display_name: name.clone(),
            pubkey: keys.pubkey_hex(),
            revoked_at: None,
            peer_grants: serde_json::Map::new(),
            default_groups: Vec::new(),
        };
        state::insert_member(&tx, &member, now)?;
        let config_dir = out_dir.join(name);
        configs.push((
            config_dir.clone(),
            config_json(&mesh, &member, &keys, broker_url, now),
        ));
        created.push(CreatedMember {
            name: name.clone(),
            member_id: member.id,
            pubkey: member.pubkey,
            config_dir,
        });
    }
    // Config files first: if one cannot be written, the members are not committed.
    for (dir, config) in &configs {
        write_config(dir, config)?;
    }
    tx.commit().map_err(state::sql("commit create"))?;
    Ok(MeshCreated {
        mesh_id: mesh.id,
        members: created,
    })
}

/// Marks member `name` of the state directory's mesh revoked; a running dev broker closes its
/// sockets with 4002 `banned` within ~200 ms, and its later hellos get `revoked`.
pub fn revoke_member(state_dir: &Path, name: &str) -> Result<MemberRow, DevBrokerError> {
    let conn = state::open(state_dir)?;
    let mesh = state::mesh(&conn)?.ok_or_else(|| DevBrokerError::NoMesh {
        state_dir: state_dir.to_path_buf(),
    })?;
    state::revoke_member(&conn, &mesh.id, name, now_ms())
}

fn validate_names(names: &[String]) -> Result<(), DevBrokerError> {
    let invalid = |name: &str, reason| DevBrokerError::InvalidMemberName {
        name: name.to_owned(),
        reason,
    };
    if names.is_empty() {
        return Err(invalid("", "no member names given"));
    }
    for (index, name) in names.iter().enumerate() {
        if name.is_empty() {
            return Err(invalid(name, "empty"));
        }
        if name.len() > 64 {
            return Err(invalid(name, "longer than 64 characters"));
        }
        if name.starts_with('.')
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(invalid(
                name,
                "use letters, digits, '-', '_' and '.', not starting with '.'",
            ));
        }
        if names[..index].contains(name) {
            return Err(invalid(name, "given twice"));
        }
    }
    Ok(())
}

fn absolute(path: &Path) -> Result<PathBuf, DevBrokerError> {
    std::path::absolute(path).map_err(|source| DevBrokerError::Io {
        op: "resolve",
        path: path.to_path_buf(),
        source,
    })
}

/// claudemesh's `config.json` for one member (SPEC §2, BROKER-PROTOCOL §8.3).
fn config_json(
    mesh: &MeshRow,
    member: &MemberRow,
    keys: &MemberKeys,
    broker_url: &str,
    now: i64,
) -> serde_json::Value {
    json!({
        "version": 1,
        "meshes": [{
            "meshId": mesh.id,
            "memberId": member.id,
            "slug": mesh.slug,
            "name": mesh.name,
            "pubkey": member.pubkey,
            "secretKey": keys.secret_hex(),
            "brokerUrl": broker_url,
            "joinedAt": iso_from_ms(now),
        }],
        "displayName": member.display_name,
    })
}

/// Writes `dir/config.json` (dir 0700, file 0600) atomically through `config.json.tmp`.
fn write_config(dir: &Path, config: &serde_json::Value) -> Result<(), DevBrokerError> {
    use std::os::unix::fs::PermissionsExt;
    state::create_private_dir(dir)?;
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| DevBrokerError::Io { op, path, source }
    };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io("chmod", dir))?;
    let text = serde_json::to_string_pretty(config).map_err(|source| DevBrokerError::Json {
        what: "config.json",
        source,
    })?;
    let tmp = dir.join("config.json.tmp");
    let target = dir.join("config.json");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("create", &tmp))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, &target).map_err(io("rename", &target))?;
    Ok(())
}
