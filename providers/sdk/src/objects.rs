//! The few object operations a remote state backend needs: read with a version tag,
//! conditional write, delete. Each cloud provider implements [`Objects`] on its object
//! store (S3, GCS, Azure Blob) and hands it out through its factory's `backend`; skyform's
//! state layer builds the lock and the serial/lineage checks on top.

use crate::ProviderError;

/// The result of a conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Put {
    /// Written; the new version tag (ETag, generation).
    Written(String),
    /// The condition did not hold (the object exists, or changed since the tag was read).
    Refused,
}

/// Objects under one bucket/container, addressed by key.
pub trait Objects: Send + Sync {
    /// The object's bytes and version tag, or `None` when it does not exist.
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, ProviderError>;
    /// Writes only when the object is absent (`version` None: `If-None-Match: *`,
    /// `ifGenerationMatch=0`) or when its version tag still equals `version`.
    fn put_if(&self, key: &str, data: Vec<u8>, version: Option<&str>) -> Result<Put, ProviderError>;
    /// Deletes the object (absent is fine).
    fn delete(&self, key: &str) -> Result<(), ProviderError>;
    /// `s3://bucket/key`, for messages.
    fn describe(&self, key: &str) -> String;
}

/// Objects by key: bytes and version tag.
type Store = std::collections::BTreeMap<String, (Vec<u8>, String)>;

/// An in-memory [`Objects`] with the same conditional semantics, for tests.
#[derive(Default)]
pub struct MemoryObjects {
    /// The last version number given out, and the objects.
    inner: std::sync::Mutex<(u64, Store)>,
}

impl Objects for MemoryObjects {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, ProviderError> {
        Ok(self.inner.lock().expect("lock").1.get(key).cloned())
    }

    fn put_if(&self, key: &str, data: Vec<u8>, version: Option<&str>) -> Result<Put, ProviderError> {
        let mut g = self.inner.lock().expect("lock");
        let current = g.1.get(key).map(|x| x.1.clone());
        if current.as_deref() != version {
            return Ok(Put::Refused);
        }
        g.0 += 1;
        let tag = format!("v{}", g.0);
        g.1.insert(key.to_string(), (data, tag.clone()));
        Ok(Put::Written(tag))
    }

    fn delete(&self, key: &str) -> Result<(), ProviderError> {
        self.inner.lock().expect("lock").1.remove(key);
        Ok(())
    }

    fn describe(&self, key: &str) -> String {
        format!("memory://{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditional_puts() {
        let m = MemoryObjects::default();
        let Put::Written(v1) = m.put_if("k", b"a".to_vec(), None).unwrap() else { panic!("first put") };
        assert_eq!(m.put_if("k", b"b".to_vec(), None).unwrap(), Put::Refused, "create-only on an existing key");
        assert_eq!(m.put_if("k", b"b".to_vec(), Some("v0")).unwrap(), Put::Refused, "stale version");
        assert!(matches!(m.put_if("k", b"b".to_vec(), Some(&v1)).unwrap(), Put::Written(_)));
        assert_eq!(m.get("k").unwrap().unwrap().0, b"b");
    }
}
