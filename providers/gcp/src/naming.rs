//! Names and labels under GCP's rules, derived from skyform's tokens and owner tags (pure).
//!
//! - An instance is named after its idempotency token ([`instance_name`]): inserting twice
//!   with one token targets one name, so a repeated allocate finds the first instance.
//!   skyform's tokens (UUIDs) give `skyform-<uuid>`, from which the token reads back
//!   ([`token_from_name`]); other tokens are shortened with a hash.
//! - Owner tags become labels (`skyform:job` → `skyform-job`) whose values follow the label
//!   rules ([`label_value`]: lowercase, `[a-z0-9_-]`, at most 63 characters). The encoding is
//!   one-way: labels select instances on the server, and the exact tags and token travel in
//!   the instance's metadata ([`TAGS_KEY`], [`TOKEN_KEY`]), which `read` gives back.

use std::collections::BTreeMap;

/// The label and metadata key of the idempotency token.
pub const TOKEN_LABEL: &str = "skyform-token";
/// Metadata key holding the exact token.
pub const TOKEN_KEY: &str = "skyform-token";
/// Metadata key holding the exact owner tags (a JSON object).
pub const TAGS_KEY: &str = "skyform-owner-tags";
/// The label every skyform instance carries (`read(ReadRequest::all())` selects on it).
pub const LINEAGE_LABEL: &str = "skyform-lineage";

const PREFIX: &str = "skyform-";

/// FNV-1a 64 of a string, for stable short suffixes.
fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn name_safe(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect()
}

/// The instance name of a token: `skyform-<token>` when the token is already a valid tail
/// (lowercase letters, digits and single `-`, starting and ending with a letter or digit,
/// short enough), else `skyform-<cleaned prefix>--<hash>` (the `--` marks a hashed name).
/// Always a valid GCE name (`[a-z]([-a-z0-9]*[a-z0-9])?`, at most 63 characters), different
/// for different tokens.
pub fn instance_name(token: &str) -> String {
    let plain = !token.is_empty()
        && token.len() <= 63 - PREFIX.len()
        && token.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !token.starts_with('-')
        && !token.ends_with('-')
        && !token.contains("--");
    if plain {
        return format!("{PREFIX}{token}");
    }
    let clean: String = name_safe(token).chars().take(36).collect();
    let clean = match clean.trim_matches('-') {
        "" => "t",
        c => c,
    };
    format!("{PREFIX}{clean}--{:016x}", fnv(token))
}

/// The token an instance name was made from, when the name holds it whole.
pub fn token_from_name(name: &str) -> Option<String> {
    let t = name.strip_prefix(PREFIX)?;
    (instance_name(t) == name).then(|| t.to_string())
}

/// The label key of an owner tag key: `skyform:lineage` → `skyform-lineage`.
pub fn label_key(tag: &str) -> String {
    let mut k: String = tag
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c.to_ascii_lowercase() } else { '-' })
        .collect();
    if !k.starts_with(|c: char| c.is_ascii_lowercase()) {
        k.insert_str(0, "k-");
    }
    if k.len() > 63 {
        k = format!("{}-{:016x}", &k[..46], fnv(tag));
    }
    k
}

/// The label value of a tag value: lowercase, other characters as `_`, at most 63
/// characters (longer values keep a prefix and a hash of the whole).
pub fn label_value(v: &str) -> String {
    let s: String = v
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c.to_ascii_lowercase() } else { '_' })
        .collect();
    if s.len() <= 63 {
        s
    } else {
        format!("{}-{:016x}", &s[..46], fnv(v))
    }
}

/// The labels of an instance: its owner tags and token, encoded.
pub fn labels(owner_tags: &BTreeMap<String, String>, token: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = owner_tags.iter().map(|(k, v)| (label_key(k), label_value(v))).collect();
    out.insert(TOKEN_LABEL.into(), label_value(token));
    out
}

/// The Compute Engine list filter selecting instances that carry these owner tags (all of
/// them); no tags: every instance with a `skyform-lineage` label.
pub fn filter(owner_tags: &BTreeMap<String, String>) -> String {
    if owner_tags.is_empty() {
        return format!("(labels.{LINEAGE_LABEL}:*)");
    }
    owner_tags
        .iter()
        .map(|(k, v)| format!("(labels.{} = \"{}\")", label_key(k), label_value(v)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// Checks a user label against GCP's rules (and keeps `skyform-*` keys for skyform).
pub fn check_label(k: &str, v: &str) -> Result<(), String> {
    let ok = |s: &str| s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if k.is_empty() || k.len() > 63 || !k.starts_with(|c: char| c.is_ascii_lowercase()) || !ok(k) {
        return Err(format!(
            "label key `{k}` must start with a lowercase letter and hold only lowercase letters, digits, `_` and `-` (at most 63)"
        ));
    }
    if k.starts_with(PREFIX) {
        return Err(format!("label key `{k}`: keys starting with `skyform-` are skyform's own"));
    }
    if v.len() > 63 || !ok(v) {
        return Err(format!(
            "label `{k}`: value `{v}` must hold only lowercase letters, digits, `_` and `-` (at most 63)"
        ));
    }
    Ok(())
}

/// The region of a zone (`us-central1-a` → `us-central1`).
pub fn region_of(zone: &str) -> &str {
    zone.rsplit_once('-').map(|(r, _)| r).unwrap_or(zone)
}

/// The last segment of a resource URL (`.../machineTypes/n1-standard-8` → `n1-standard-8`).
pub fn short(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_name(n: &str) -> bool {
        n.len() <= 63
            && n.starts_with(|c: char| c.is_ascii_lowercase())
            && n.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    }

    #[test]
    fn names_follow_gce_rules_and_give_uuid_tokens_back() {
        let uuid = "3f2b8c1e-9a7d-4e2f-8b1c-0d9e8f7a6b5c";
        assert_eq!(instance_name(uuid), format!("skyform-{uuid}"));
        assert_eq!(token_from_name(&instance_name(uuid)).as_deref(), Some(uuid));
        for t in ["conformance-token-1", "Tok_With.Dots", "x".repeat(200).as_str(), "--", "a-", "-a", ""] {
            let n = instance_name(t);
            assert!(valid_name(&n), "{t} -> {n}");
            assert_eq!(instance_name(t), n, "deterministic");
        }
        assert_ne!(instance_name("A"), instance_name("a"));
        assert_ne!(instance_name("x.y"), instance_name("x-y"));
        assert_eq!(token_from_name(&instance_name("Tok_With.Dots")), None);
        // A hashed name never reads back as a token, and no plain token maps onto it.
        let hashed = instance_name("A");
        assert_eq!(token_from_name(&hashed), None);
        assert_ne!(instance_name(hashed.strip_prefix("skyform-").unwrap()), hashed);
        assert_eq!(token_from_name("my-own-vm"), None);
    }

    #[test]
    fn labels_follow_gcp_rules() {
        let tags: BTreeMap<String, String> = [
            ("skyform:lineage", "3F2B-uuid"),
            ("skyform:task", "task.train"),
            ("skyform:job", &"Long Job Name ".repeat(10)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let l = labels(&tags, "tok-1");
        assert_eq!(l["skyform-lineage"], "3f2b-uuid");
        assert_eq!(l["skyform-task"], "task_train");
        assert_eq!(l["skyform-token"], "tok-1");
        for (k, v) in &l {
            check_label(if k.starts_with("skyform-") { "k" } else { k }, v).unwrap();
        }
        assert!(l["skyform-job"].len() <= 63);
        assert_ne!(label_value(&"a".repeat(70)), label_value(&"a".repeat(71)));
        assert_eq!(label_key("team"), "team");
        assert_eq!(label_key("9lives"), "k-9lives");
    }

    #[test]
    fn filters() {
        assert_eq!(filter(&BTreeMap::new()), "(labels.skyform-lineage:*)");
        let t: BTreeMap<String, String> =
            [("skyform:job".to_string(), "J".to_string()), ("skyform:task".to_string(), "task.a".to_string())].into();
        assert_eq!(filter(&t), "(labels.skyform-job = \"j\") AND (labels.skyform-task = \"task_a\")");
    }

    #[test]
    fn zones_and_urls() {
        assert_eq!(region_of("us-central1-a"), "us-central1");
        assert_eq!(region_of("europe-west4-b"), "europe-west4");
        assert_eq!(short("https://x/zones/z/machineTypes/n1-standard-8"), "n1-standard-8");
        assert_eq!(short("n1-standard-8"), "n1-standard-8");
    }
}
