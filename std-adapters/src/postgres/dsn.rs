//! The TLS keys of a DSN, taken out before the driver parses the rest: libpq's `sslmode`
//! values `allow`, `verify-ca` and `verify-full`, and `sslrootcert`, `sslcert` and `sslkey`,
//! are not the driver's to read.

/// The TLS keys a DSN names, each as written (after unquoting or percent-decoding).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TlsKeys {
    pub(crate) sslmode: Option<String>,
    pub(crate) sslrootcert: Option<String>,
    pub(crate) sslcert: Option<String>,
    pub(crate) sslkey: Option<String>,
}

impl TlsKeys {
    /// Whether the DSN named any of them.
    pub(crate) fn any(&self) -> bool {
        self.sslmode.is_some()
            || self.sslrootcert.is_some()
            || self.sslcert.is_some()
            || self.sslkey.is_some()
    }

    /// These keys, with `other`'s where these name none.
    pub(crate) fn or(self, other: TlsKeys) -> TlsKeys {
        TlsKeys {
            sslmode: self.sslmode.or(other.sslmode),
            sslrootcert: self.sslrootcert.or(other.sslrootcert),
            sslcert: self.sslcert.or(other.sslcert),
            sslkey: self.sslkey.or(other.sslkey),
        }
    }

    /// Keeps `value` under `key` if `key` is one of them; whether it is.
    fn take(&mut self, key: &str, value: String) -> bool {
        let slot = match key {
            "sslmode" => &mut self.sslmode,
            "sslrootcert" => &mut self.sslrootcert,
            "sslcert" => &mut self.sslcert,
            "sslkey" => &mut self.sslkey,
            _ => return false,
        };
        *slot = Some(value);
        true
    }
}

/// `dsn` without its TLS keys, and those keys. A DSN that does not tokenize is returned whole,
/// for the driver to report.
pub(crate) fn split_tls_keys(dsn: &str) -> (String, TlsKeys) {
    let trimmed = dsn.trim_start();
    let split = if trimmed.starts_with("postgresql://") || trimmed.starts_with("postgres://") {
        Some(split_url(trimmed))
    } else {
        split_key_values(dsn)
    };
    split.unwrap_or_else(|| (dsn.to_owned(), TlsKeys::default()))
}

/// A URL's query parameters: `?k=v&k=v`, percent-encoded. As the driver reads it, the user
/// info ends at the first `@`, so the query starts at the first `?` after it.
fn split_url(url: &str) -> (String, TlsKeys) {
    let mut keys = TlsKeys::default();
    let after_user_info = url.find('@').map_or(0, |at| at + 1);
    let Some(question) = url[after_user_info..]
        .find('?')
        .map(|i| after_user_info + i)
    else {
        return (url.to_owned(), keys);
    };
    let (base, query) = (&url[..question], &url[question + 1..]);
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            !keys.take(&percent_decode(key), percent_decode(value))
        })
        .collect();
    if kept.is_empty() {
        (base.to_owned(), keys)
    } else {
        (format!("{base}?{}", kept.join("&")), keys)
    }
}

/// `%XX` decoded (what is not valid is kept as it is).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `key=value` pairs separated by whitespace; a value may be single-quoted, with `\` escaping
/// the next character. `None` when the text is not of that form.
fn split_key_values(dsn: &str) -> Option<(String, TlsKeys)> {
    let mut keys = TlsKeys::default();
    let mut kept = String::with_capacity(dsn.len());
    let mut rest = dsn;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return Some((kept, keys));
        }
        let key_end = rest.find(|c: char| c == '=' || c.is_whitespace())?;
        let key = &rest[..key_end];
        let after_key = rest[key_end..].trim_start();
        let after_eq = after_key.strip_prefix('=')?.trim_start();
        let (value, after_value) = value_at(after_eq)?;
        let pair = &rest[..rest.len() - after_value.len()];
        if !keys.take(key, value) {
            if !kept.is_empty() {
                kept.push(' ');
            }
            kept.push_str(pair);
        }
        rest = after_value;
    }
}

/// The value at the start of `text` (quoted or not), and what follows it. As the driver reads
/// it, a backslash takes the next character as it is, quoted or not.
fn value_at(text: &str) -> Option<(String, &str)> {
    let (quoted, body) = match text.strip_prefix('\'') {
        Some(body) => (true, body),
        None => (false, text),
    };
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\'' if quoted => return Some((value, &body[i + 1..])),
            c if c.is_whitespace() && !quoted => return Some((value, &body[i..])),
            '\\' => value.push(chars.next()?.1),
            c => value.push(c),
        }
    }
    (!quoted).then_some((value, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(mode: &str, root: Option<&str>) -> TlsKeys {
        TlsKeys {
            sslmode: Some(mode.to_owned()),
            sslrootcert: root.map(str::to_owned),
            ..TlsKeys::default()
        }
    }

    #[test]
    fn key_value_dsns_lose_only_their_tls_keys() {
        let (rest, found) = split_tls_keys(
            "host=db sslmode=verify-full password='a b\\'c' sslrootcert = '/etc/ca dir/ca.pem' dbname=rc",
        );
        assert_eq!(rest, "host=db password='a b\\'c' dbname=rc");
        assert_eq!(found, keys("verify-full", Some("/etc/ca dir/ca.pem")));
    }

    #[test]
    fn url_dsns_lose_only_their_tls_parameters() {
        let (rest, found) = split_tls_keys(
            "postgresql://app:pw@db:5432/rc?sslmode=verify-ca&application_name=x&sslrootcert=%2Fca.pem",
        );
        assert_eq!(rest, "postgresql://app:pw@db:5432/rc?application_name=x");
        assert_eq!(found, keys("verify-ca", Some("/ca.pem")));
        let (rest, found) = split_tls_keys("postgres://db/rc?sslmode=require");
        assert_eq!(
            (rest.as_str(), found),
            ("postgres://db/rc", keys("require", None))
        );
    }

    #[test]
    fn escapes_percent_encoded_keys_and_question_marks_in_passwords_are_read_as_the_driver_does() {
        let (rest, found) = split_tls_keys("password=pa\\ ss\\=x sslmode=require host=db");
        assert_eq!(rest, "password=pa\\ ss\\=x host=db");
        assert_eq!(found, keys("require", None));
        let (rest, found) = split_tls_keys("postgresql://u:p?x@db/rc?ssl%6Dode=verify-full");
        assert_eq!(rest, "postgresql://u:p?x@db/rc");
        assert_eq!(found, keys("verify-full", None));
    }

    #[test]
    fn a_dsn_that_does_not_tokenize_is_left_to_the_driver() {
        for dsn in ["host=db password='open", "host db", "=x"] {
            assert_eq!(split_tls_keys(dsn), (dsn.to_owned(), TlsKeys::default()));
        }
    }
}
