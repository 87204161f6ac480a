//! `config.json`: the claudemesh CLI's own file listing the joined meshes (BROKER-PROTOCOL.md
//! §8.3). The daemon only reads it. Parsing walks the JSON by hand so that every error names
//! the exact field (`meshes[1].secretKey`); unknown fields are ignored, as the TS CLI does.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use super::SettingsError;

/// One mesh this host has joined, as the claudemesh CLI wrote it. `Serialize` writes the same
/// camelCase shape (for tools that create configs, like the dev mesh); reading goes through
/// [`parse_config_json`], which validates.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinedMesh {
    /// The broker's id of the mesh (`meshId`); non-empty.
    pub mesh_id: String,
    /// Our member id in that mesh (`memberId`); non-empty.
    pub member_id: String,
    /// Short local name of the mesh; non-empty and unique within the config.
    pub slug: String,
    /// Human name of the mesh.
    pub name: String,
    /// Our ed25519 public key, 64 hex characters.
    pub pubkey: String,
    /// libsodium secret key: 128 hex characters (32-byte seed followed by the pubkey).
    /// Never logged: `Debug` redacts it.
    pub secret_key: String,
    /// The broker WebSocket URL, `ws://` or `wss://`.
    pub broker_url: String,
    /// When the mesh was joined (ISO 8601), if recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub joined_at: Option<String>,
    /// The mesh root key (base64url, 32 bytes) of v2 joins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_key: Option<String>,
    /// Which invite flow joined the mesh (1 or 2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invite_version: Option<u32>,
}

impl fmt::Debug for JoinedMesh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinedMesh")
            .field("mesh_id", &self.mesh_id)
            .field("member_id", &self.member_id)
            .field("slug", &self.slug)
            .field("name", &self.name)
            .field("pubkey", &self.pubkey)
            .field("secret_key", &"<redacted>")
            .field("broker_url", &self.broker_url)
            .field("joined_at", &self.joined_at)
            .field("root_key", &self.root_key.as_ref().map(|_| "<redacted>"))
            .field("invite_version", &self.invite_version)
            .finish()
    }
}

/// The parts of `config.json` the daemon uses; every other field is ignored.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaudemeshConfig {
    /// The file's format version (1 today), if present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Joined meshes in file order; may be empty (the loader turns that into an error).
    pub meshes: Vec<JoinedMesh>,
    /// The name this host shows to peers, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Groups this host joins (`groups`: `[{name, role?}]` or plain names), announced in the
    /// hello so `@group` posts reach it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<crate::wire::Group>,
}

/// Parses and validates the text of `config.json`; `file` is only used in error messages.
///
/// A missing or `null` `meshes` is an empty list (the TS CLI treats it the same way); any
/// malformed field is an error naming `file` and the field's JSON path.
pub fn parse_config_json(text: &str, file: &Path) -> Result<ClaudemeshConfig, SettingsError> {
    let root: Value = serde_json::from_str(text).map_err(|source| SettingsError::ConfigJson {
        file: file.to_path_buf(),
        source,
    })?;
    let fields = Fields { file };
    let Value::Object(top) = &root else {
        return Err(fields.bad("(top level)", "expected a JSON object"));
    };
    let version = fields.opt_u32(top, "", "version")?;
    let display_name = fields.opt_string(top, "", "displayName")?;
    let groups = match top.get("groups") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| fields.group(i, item))
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(fields.bad("groups", "expected an array")),
    };
    let meshes = match top.get("meshes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| fields.mesh(i, item))
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(fields.bad("meshes", "expected an array")),
    };
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, mesh) in meshes.iter().enumerate() {
        if let Some(first) = seen.insert(&mesh.slug, i) {
            return Err(fields.bad(
                &format!("meshes[{i}].slug"),
                &format!("duplicate slug {:?} (also meshes[{first}])", mesh.slug),
            ));
        }
    }
    Ok(ClaudemeshConfig {
        version,
        meshes,
        display_name,
        groups,
    })
}

/// Field extraction with errors that carry the file and the JSON path.
struct Fields<'a> {
    file: &'a Path,
}

impl Fields<'_> {
    /// One `groups[i]`: `"name"`, `"@name"` or `{"name", "role"?}`.
    fn group(&self, i: usize, item: &Value) -> Result<crate::wire::Group, SettingsError> {
        let path = format!("groups[{i}]");
        let expected = "expected a group name or {\"name\", \"role\"?}";
        let (name, role) = match item {
            Value::String(name) => (name.as_str(), None),
            Value::Object(o) => {
                let Some(Value::String(name)) = o.get("name") else {
                    return Err(self.bad(&format!("{path}.name"), "expected a string"));
                };
                let role = match o.get("role") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(r)) => Some(r.clone()),
                    Some(_) => return Err(self.bad(&format!("{path}.role"), "expected a string")),
                };
                (name.as_str(), role)
            }
            _ => return Err(self.bad(&path, expected)),
        };
        let name = name.trim().trim_start_matches('@');
        if name.is_empty() {
            return Err(self.bad(&path, "empty group name"));
        }
        Ok(crate::wire::Group {
            name: name.to_string(),
            role,
        })
    }

    fn bad(&self, field: &str, reason: &str) -> SettingsError {
        SettingsError::ConfigField {
            file: self.file.to_path_buf(),
            field: field.to_string(),
            reason: reason.to_string(),
        }
    }

    fn mesh(&self, index: usize, item: &Value) -> Result<JoinedMesh, SettingsError> {
        let at = format!("meshes[{index}]");
        let Value::Object(obj) = item else {
            return Err(self.bad(&at, "expected an object"));
        };
        let p = format!("{at}.");
        let mesh = JoinedMesh {
            mesh_id: self.non_empty(obj, &p, "meshId")?,
            member_id: self.non_empty(obj, &p, "memberId")?,
            slug: self.non_empty(obj, &p, "slug")?,
            name: self.string(obj, &p, "name")?,
            pubkey: self.hex(obj, &p, "pubkey", 64)?,
            secret_key: self.hex(obj, &p, "secretKey", 128)?,
            broker_url: self.string(obj, &p, "brokerUrl")?,
            joined_at: self.opt_string(obj, &p, "joinedAt")?,
            root_key: self.opt_string(obj, &p, "rootKey")?,
            invite_version: self.opt_u32(obj, &p, "inviteVersion")?,
        };
        let rest = ["wss://", "ws://"]
            .iter()
            .find_map(|scheme| mesh.broker_url.strip_prefix(scheme));
        if rest.is_none_or(str::is_empty) {
            return Err(self.bad(&format!("{p}brokerUrl"), "expected a ws:// or wss:// URL"));
        }
        Ok(mesh)
    }

    fn opt_string(
        &self,
        obj: &Map<String, Value>,
        prefix: &str,
        key: &str,
    ) -> Result<Option<String>, SettingsError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.bad(&format!("{prefix}{key}"), "expected a string")),
        }
    }

    fn string(
        &self,
        obj: &Map<String, Value>,
        prefix: &str,
        key: &str,
    ) -> Result<String, SettingsError> {
        self.opt_string(obj, prefix, key)?
            .ok_or_else(|| self.bad(&format!("{prefix}{key}"), "required field is missing"))
    }

    fn non_empty(
        &self,
        obj: &Map<String, Value>,
        prefix: &str,
        key: &str,
    ) -> Result<String, SettingsError> {
        let s = self.string(obj, prefix, key)?;
        if s.is_empty() {
            return Err(self.bad(&format!("{prefix}{key}"), "must not be empty"));
        }
        Ok(s)
    }

    fn hex(
        &self,
        obj: &Map<String, Value>,
        prefix: &str,
        key: &str,
        len: usize,
    ) -> Result<String, SettingsError> {
        let s = self.string(obj, prefix, key)?;
        if s.len() != len || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.bad(
                &format!("{prefix}{key}"),
                &format!("expected {len} hex characters"),
            ));
        }
        Ok(s)
    }

    fn opt_u32(
        &self,
        obj: &Map<String, Value>,
        prefix: &str,
        key: &str,
    ) -> Result<Option<u32>, SettingsError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    self.bad(&format!("{prefix}{key}"), "expected a non-negative integer")
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mesh_json(slug: &str) -> Value {
        json!({
            "meshId": format!("mesh_{slug}"), "memberId": format!("member_{slug}"),
            "slug": slug, "name": format!("Mesh {slug}"),
            "pubkey": "ab".repeat(32), "secretKey": "cd".repeat(64),
            "brokerUrl": "wss://ic.claudemesh.com/ws", "joinedAt": "2026-05-03T12:00:00.000Z",
            "futureField": {"nested": true}
        })
    }

    fn parse(v: &Value) -> Result<ClaudemeshConfig, SettingsError> {
        parse_config_json(&v.to_string(), Path::new("config.json"))
    }

    fn err(v: &Value) -> String {
        parse(v).unwrap_err().to_string()
    }

    #[test]
    fn parses_meshes_in_order_and_ignores_unknown_fields() {
        let cfg = parse(&json!({
            "version": 1, "displayName": "alice", "role": "dev", "groups": ["x"],
            "meshes": [mesh_json("one"), mesh_json("two")]
        }))
        .unwrap();
        assert_eq!(cfg.version, Some(1));
        assert_eq!(cfg.display_name.as_deref(), Some("alice"));
        let slugs: Vec<_> = cfg.meshes.iter().map(|m| m.slug.as_str()).collect();
        assert_eq!(slugs, ["one", "two"]);
        let m = &cfg.meshes[0];
        assert_eq!(m.mesh_id, "mesh_one");
        assert_eq!(m.member_id, "member_one");
        assert_eq!(m.secret_key, "cd".repeat(64));
        assert_eq!(m.joined_at.as_deref(), Some("2026-05-03T12:00:00.000Z"));
        assert_eq!(m.root_key, None);
        assert_eq!(m.invite_version, None);
    }

    #[test]
    fn bad_secret_key_error_names_file_and_field_path() {
        let mut bad = mesh_json("two");
        bad["secretKey"] = json!("cd".repeat(63));
        let msg = err(&json!({"meshes": [mesh_json("one"), bad]}));
        assert_eq!(
            msg,
            "config.json: meshes[1].secretKey: expected 128 hex characters"
        );
    }

    #[test]
    fn non_hex_pubkey_is_rejected() {
        let mut bad = mesh_json("one");
        bad["pubkey"] = json!(format!("{}zz", "ab".repeat(31)));
        let msg = err(&json!({"meshes": [bad]}));
        assert_eq!(
            msg,
            "config.json: meshes[0].pubkey: expected 64 hex characters"
        );
    }

    #[test]
    fn broker_url_must_be_a_websocket_url() {
        for url in ["https://broker/ws", "wss://", "", "ws:/x"] {
            let mut bad = mesh_json("one");
            bad["brokerUrl"] = json!(url);
            let msg = err(&json!({"meshes": [bad]}));
            assert!(
                msg.ends_with("meshes[0].brokerUrl: expected a ws:// or wss:// URL"),
                "{url}: {msg}"
            );
        }
        let mut ok = mesh_json("one");
        ok["brokerUrl"] = json!("ws://127.0.0.1:7900/ws");
        assert!(parse(&json!({"meshes": [ok]})).is_ok());
    }

    #[test]
    fn empty_and_missing_ids_are_rejected_with_their_path() {
        let mut empty = mesh_json("one");
        empty["memberId"] = json!("");
        assert_eq!(
            err(&json!({"meshes": [empty]})),
            "config.json: meshes[0].memberId: must not be empty"
        );
        let mut missing = mesh_json("one");
        missing.as_object_mut().unwrap().remove("meshId");
        assert_eq!(
            err(&json!({"meshes": [missing]})),
            "config.json: meshes[0].meshId: required field is missing"
        );
        let mut typed = mesh_json("one");
        typed["slug"] = json!(7);
        assert_eq!(
            err(&json!({"meshes": [typed]})),
            "config.json: meshes[0].slug: expected a string"
        );
    }

    #[test]
    fn duplicate_slugs_are_rejected() {
        let msg = err(&json!({"meshes": [mesh_json("a"), mesh_json("b"), mesh_json("a")]}));
        assert_eq!(
            msg,
            "config.json: meshes[2].slug: duplicate slug \"a\" (also meshes[0])"
        );
    }

    #[test]
    fn empty_missing_or_null_meshes_parse_to_an_empty_list() {
        for v in [json!({"meshes": []}), json!({}), json!({"meshes": null})] {
            assert!(parse(&v).unwrap().meshes.is_empty(), "{v}");
        }
        assert_eq!(
            err(&json!({"meshes": {}})),
            "config.json: meshes: expected an array"
        );
        assert_eq!(
            err(&json!([1])),
            "config.json: (top level): expected a JSON object"
        );
    }

    #[test]
    fn invalid_json_error_names_file_line_and_column() {
        let msg = parse_config_json("{\n  \"meshes\": [,]\n}", Path::new("/x/config.json"))
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("/x/config.json: invalid JSON: "), "{msg}");
        assert!(msg.contains("line 2 column"), "{msg}");
    }

    #[test]
    fn optional_fields_are_read_and_type_checked() {
        let mut m = mesh_json("one");
        m["rootKey"] = json!("cm9vdA");
        m["inviteVersion"] = json!(2);
        let cfg = parse(&json!({"meshes": [m.clone()]})).unwrap();
        assert_eq!(cfg.meshes[0].root_key.as_deref(), Some("cm9vdA"));
        assert_eq!(cfg.meshes[0].invite_version, Some(2));
        m["inviteVersion"] = json!(-1);
        assert_eq!(
            err(&json!({"meshes": [m]})),
            "config.json: meshes[0].inviteVersion: expected a non-negative integer"
        );
    }

    #[test]
    fn debug_output_redacts_the_secret_key() {
        let cfg = parse(&json!({"meshes": [mesh_json("one")]})).unwrap();
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains(&"cd".repeat(64)), "{dbg}");
        assert!(dbg.contains("<redacted>"));
        assert!(dbg.contains(&"ab".repeat(32)), "pubkey stays visible");
    }

    #[test]
    fn serialized_config_parses_back_to_the_same_value() {
        let cfg = parse(&json!({"version": 1, "displayName": "bob",
            "meshes": [mesh_json("one"), mesh_json("two")]}))
        .unwrap();
        let text = serde_json::to_string(&cfg).unwrap();
        assert!(
            text.contains("\"secretKey\""),
            "camelCase on the way out: {text}"
        );
        assert_eq!(parse_config_json(&text, Path::new("c.json")).unwrap(), cfg);
    }

    #[test]
    fn groups_accept_names_and_objects_and_name_the_bad_field() {
        let cfg = parse(&json!({"meshes": [mesh_json("one")],
            "groups": ["ops", "@dev", {"name": "qa", "role": "lead"}]}))
        .unwrap();
        let names: Vec<(&str, Option<&str>)> = cfg
            .groups
            .iter()
            .map(|g| (g.name.as_str(), g.role.as_deref()))
            .collect();
        assert_eq!(names, [("ops", None), ("dev", None), ("qa", Some("lead"))]);
        assert_eq!(
            err(&json!({"meshes": [], "groups": ["ok", {"role": "x"}]})),
            "config.json: groups[1].name: expected a string"
        );
        assert!(err(&json!({"meshes": [], "groups": "ops"})).contains("groups: expected an array"));
        assert!(err(&json!({"meshes": [], "groups": [""]})).contains("groups[0]: empty group name"));
    }
}
