//! Reads the principals a keytab file holds (MIT's format, version 0x0502 or 0x0501), so a
//! login from the wrong keytab says whose keys it holds instead of GSSAPI's "no credentials".

/// The principals in `bytes`, as `primary[/instance]@REALM`, in file order, each once.
pub fn principals(bytes: &[u8]) -> Result<Vec<String>, String> {
    let mut r = Reader { bytes, at: 0 };
    let version = r.u16()?;
    if version != 0x0502 && version != 0x0501 {
        return Err(format!("not a keytab (starts with {version:#06x})"));
    }
    let mut out: Vec<String> = Vec::new();
    while r.at < bytes.len() {
        let size = r.u32()? as i32;
        let entry = r.take(size.unsigned_abs() as usize)?;
        if size <= 0 {
            continue; // a hole left by a deleted entry
        }
        let name = principal(entry, version == 0x0501)?;
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

fn principal(entry: &[u8], counts_realm: bool) -> Result<String, String> {
    let mut r = Reader {
        bytes: entry,
        at: 0,
    };
    let mut count = r.u16()? as usize;
    if counts_realm {
        count = count.saturating_sub(1);
    }
    let realm = r.text()?;
    let parts = (0..count)
        .map(|_| r.text())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(format!("{}@{realm}", parts.join("/")))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| format!("truncated at byte {}", self.at))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn text(&mut self) -> Result<String, String> {
        let n = self.u16()? as usize;
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(realm: &str, parts: &[&str]) -> Vec<u8> {
        let mut e = (parts.len() as u16).to_be_bytes().to_vec();
        for t in std::iter::once(&realm).chain(parts) {
            e.extend((t.len() as u16).to_be_bytes());
            e.extend(t.as_bytes());
        }
        // name type, timestamp, kvno, key type, key length, key
        e.extend([0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 18, 0, 2, 0xaa, 0xbb]);
        let mut out = (e.len() as u32).to_be_bytes().to_vec();
        out.extend(e);
        out
    }

    #[test]
    fn lists_each_principal_once_and_skips_holes() {
        let mut k = vec![5, 2];
        k.extend(entry("R.TEST", &["flumen", "edge-01"]));
        k.extend(entry("R.TEST", &["flumen", "edge-01"]));
        k.extend((-4i32).to_be_bytes());
        k.extend([0; 4]);
        k.extend(entry("R.TEST", &["other"]));
        assert_eq!(
            principals(&k).unwrap(),
            vec!["flumen/edge-01@R.TEST", "other@R.TEST"]
        );
    }

    #[test]
    fn garbage_and_truncation_are_errors() {
        assert!(principals(b"hello").unwrap_err().contains("not a keytab"));
        let mut k = vec![5, 2];
        k.extend(entry("R", &["a"]));
        k.truncate(k.len() - 3);
        assert!(principals(&k).unwrap_err().contains("truncated"));
    }
}
