//! The repository's systemd units read the way systemd reads them: `[Section]` tables of
//! `Key=value` lines, comments and line continuations resolved, `ExecStart=` and
//! `Environment=` split by systemd's quoting rules, the credentials a unit loads. The
//! systemd-units test starts the daemons from what is parsed here, copying nothing.

use crate::host::repo_root;

/// A unit file: sections of `key=value` lines, comments and continuations resolved.
#[derive(Debug)]
pub struct Unit {
    /// The file name, e.g. `vigil-signer.service`.
    pub name: String,
    entries: Vec<(String, String, String)>,
}

impl Unit {
    /// The unit `name` of the repository's `systemd/`.
    pub fn read(name: &str) -> Unit {
        let path = repo_root().join("systemd").join(name);
        Unit::parse(name, &std::fs::read_to_string(&path).unwrap())
    }

    /// A unit file's text, named `name`.
    pub fn parse(name: &str, text: &str) -> Unit {
        let mut entries = Vec::new();
        let mut section = String::new();
        let mut pending = String::new();
        for raw in text.lines() {
            let line = raw.trim();
            if pending.is_empty() && (line.starts_with('#') || line.starts_with(';')) {
                continue;
            }
            if let Some(cont) = line.strip_suffix('\\') {
                pending.push_str(cont);
                pending.push(' ');
                continue;
            }
            let full = format!("{pending}{line}");
            pending.clear();
            if let Some(s) = full.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                section = s.to_string();
            } else if let Some((k, v)) = full.split_once('=') {
                let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
                entries.push((section.clone(), k.trim().to_string(), v));
            }
        }
        Unit {
            name: name.to_string(),
            entries,
        }
    }

    /// Every value of `key` in `[section]`, in order.
    pub fn all(&self, section: &str, key: &str) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.clone())
            .collect()
    }

    /// The one value of `key` in `[section]` (the test fails if it appears more or less).
    pub fn one(&self, section: &str, key: &str) -> String {
        let all = self.all(section, key);
        assert_eq!(
            all.len(),
            1,
            "{}: [{section}] {key}= should appear once",
            self.name
        );
        all[0].clone()
    }

    /// ExecStart= split, with every argument passed through `map`.
    pub fn exec_start(&self, map: &dyn Fn(&str) -> String) -> Vec<String> {
        let line = self.one("Service", "ExecStart");
        assert!(
            !line.contains('%') && !line.contains('$'),
            "{}: ExecStart uses specifiers or variables the test does not expand: {line}",
            self.name
        );
        split_exec(&line).iter().map(|a| map(a)).collect()
    }

    /// Every Environment= assignment, in order.
    pub fn environment(&self) -> Vec<(String, String)> {
        self.all("Service", "Environment")
            .iter()
            .flat_map(|line| split_exec(line))
            .map(|kv| {
                let (k, v) = kv
                    .split_once('=')
                    .expect("Environment= entries are KEY=VALUE");
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    /// Credential names from LoadCredential= and LoadCredentialEncrypted=.
    pub fn credentials(&self) -> Vec<String> {
        ["LoadCredential", "LoadCredentialEncrypted"]
            .iter()
            .flat_map(|k| self.all("Service", k))
            .map(|v| v.split(':').next().unwrap().to_string())
            .collect()
    }
}

/// systemd's command-line splitting: whitespace, double and single quotes, backslash
/// escapes; a leading `-`, `+`, `!`, `@` or `:` prefix of the executable is dropped.
pub fn split_exec(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (_, '\\') => {
                word.extend(chars.next());
                in_word = true;
            }
            (_, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if let Some(first) = words.first_mut() {
        *first = first
            .trim_start_matches(['-', '+', '!', '@', ':'])
            .to_string();
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Command-line splitting follows systemd's rules for the cases the units use.
    #[test]
    fn exec_lines_split_like_systemd() {
        let cases: &[(&str, &[&str])] = &[
            ("/bin/x a  b", &["/bin/x", "a", "b"]),
            ("-/bin/x \"a b\" 'c d'", &["/bin/x", "a b", "c d"]),
            ("+/bin/x a\\ b", &["/bin/x", "a b"]),
        ];
        for (line, want) in cases {
            assert_eq!(split_exec(line), *want, "{line}");
        }
        let unit = Unit::parse(
            "t",
            "[Service]\n# c\nExecStart=/bin/x \\\n  --a 1\nEnvironment=A=1 \"B=two words\"\n",
        );
        assert_eq!(unit.one("Service", "ExecStart"), "/bin/x --a 1");
        assert_eq!(
            unit.environment(),
            vec![("A".into(), "1".into()), ("B".into(), "two words".into())]
        );
    }
}
