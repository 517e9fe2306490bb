//! `ha-daemon.toml(5)`, written from the README's *Configuration* section
//! (its prose and its key table) and the example configs, so the man page
//! and the README cannot drift apart. Hand-written: clap_mangen covers the
//! command line only, and the subset of Markdown the README uses there
//! (paragraphs, one table, code blocks, `code`, *emphasis*) is small.

/// The page, or what in the README it could not find.
pub fn config_page(
    readme: &str,
    example: &str,
    witness: &str,
    version: &str,
) -> Result<String, String> {
    let start = readme
        .find("\n## Configuration\n")
        .ok_or("README.md has no \"## Configuration\" section")?;
    let body = &readme[start + "\n## Configuration\n".len()..];
    let end = body.find("\n## ").unwrap_or(body.len());
    let body = &body[..end];
    let mut o = String::new();
    o.push_str(&format!(
        ".TH HA-DAEMON.TOML 5 \"\" \"ha-daemon {}\" \"ha-daemon\"\n",
        roff_text(version)
    ));
    o.push_str(".SH NAME\nha-daemon.toml \\- configuration of ha-daemon (VRRP failover for Redis) and of its witness\n");
    o.push_str(".SH SYNOPSIS\n/etc/ha\\-daemon/ha.toml, /etc/ha\\-daemon/witness.toml\n");
    o.push_str(".SH DESCRIPTION\n");
    let mut in_code = false;
    let mut in_table = false;
    let mut para = Vec::new();
    let flush = |o: &mut String, para: &mut Vec<&str>| {
        if !para.is_empty() {
            o.push_str(".PP\n");
            o.push_str(&roff_line(&roff_text(&inline(&para.join(" ")))));
            o.push('\n');
            para.clear();
        }
    };
    for line in body.lines() {
        if line.starts_with("```") {
            flush(&mut o, &mut para);
            o.push_str(if in_code { ".fi\n" } else { ".PP\n.nf\n" });
            in_code = !in_code;
            continue;
        }
        if in_code {
            o.push_str(&roff_line(&roff_text(line)));
            o.push('\n');
            continue;
        }
        if line.starts_with('|') {
            flush(&mut o, &mut para);
            let cells = cells(line);
            if !in_table {
                // The header row.
                in_table = true;
                o.push_str(
                    ".SH KEYS\nKeys without a table name are those of an \\fB[[instance]]\\fR.\n",
                );
                continue;
            }
            if cells
                .iter()
                .all(|c| c.chars().all(|ch| ch == '-' || ch == ' '))
            {
                continue;
            }
            let [key, default, meaning] = cells.as_slice() else {
                return Err(format!(
                    "README.md Configuration table: a row without 3 cells: {line}"
                ));
            };
            o.push_str(&format!(
                ".TP\n{}\ndefault: {}\n.br\n{}\n",
                roff_line(&roff_text(&inline(key))),
                roff_text(&inline(default)),
                roff_line(&roff_text(&inline(meaning)))
            ));
            continue;
        }
        if in_table && !line.trim().is_empty() {
            in_table = false;
            o.push_str(".SH NOTES\n");
        }
        if line.trim().is_empty() {
            flush(&mut o, &mut para);
        } else {
            para.push(line.trim());
        }
    }
    flush(&mut o, &mut para);
    for (title, text) in [("EXAMPLE", example), ("WITNESS EXAMPLE", witness)] {
        o.push_str(&format!(".SH {title}\n.nf\n"));
        for l in text.lines() {
            o.push_str(&roff_line(&roff_text(l)));
            o.push('\n');
        }
        o.push_str(".fi\n");
    }
    o.push_str(
        ".SH SEE ALSO\n\\fBha-daemon\\fR(8), \\fBkeepalived.conf\\fR(5), \\fBredis-server\\fR(1)\n",
    );
    Ok(o)
}

/// A table row's cells (`\|` is a `|` inside a cell).
fn cells(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.trim().trim_start_matches('|').chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cur.push('|');
                chars.next();
            }
            '|' => out.push(std::mem::take(&mut cur).trim().to_string()),
            c => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// Markdown's `code`, **strong** and *emphasis* as private markers, turned
/// into fonts by `roff_text` (after its escaping).
fn inline(s: &str) -> String {
    let mut o = String::new();
    let mut code = false;
    let mut em = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '`' => {
                o.push(if code { '\u{2}' } else { '\u{1}' });
                code = !code;
            }
            '*' if !code => {
                if chars.peek() == Some(&'*') {
                    chars.next();
                    o.push(if em { '\u{2}' } else { '\u{1}' });
                } else {
                    o.push(if em { '\u{4}' } else { '\u{3}' });
                }
                em = !em;
            }
            c => o.push(c),
        }
    }
    o
}

/// Escapes for roff, then the markers of `inline` as font changes.
fn roff_text(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\e"),
            '-' => o.push_str("\\-"),
            '\u{1}' => o.push_str("\\fB"),
            '\u{3}' => o.push_str("\\fI"),
            '\u{2}' | '\u{4}' => o.push_str("\\fR"),
            // groff reads ASCII; others by code point.
            c if !c.is_ascii() => o.push_str(&format!("\\[u{:04X}]", c as u32)),
            c => o.push(c),
        }
    }
    o
}

/// A line that would start with a control character is not one.
fn roff_line(s: &str) -> String {
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_section_becomes_a_page_with_every_key() {
        let readme = include_str!("../../README.md");
        let page = config_page(readme, "[node]\nname = \"a\"\n", ".x\n", "0.1.0").unwrap();
        assert!(page.starts_with(".TH HA-DAEMON.TOML 5"));
        for key in [
            "max_staleness_ms",
            "allow_empty_master",
            "\\fB[sentinel] listen\\fR",
        ] {
            assert!(page.contains(key), "{key} missing");
        }
        assert!(
            page.contains("\\&.x"),
            "a line starting with a dot is escaped"
        );
        assert!(!page.contains('`') && !page.contains('\u{1}'));
        assert!(page.is_ascii(), "groff reads ASCII");
    }

    #[test]
    fn cells_keep_escaped_bars() {
        assert_eq!(
            cells("| `a` | none | `<A\\|B>` |"),
            vec!["`a`", "none", "`<A|B>`"]
        );
    }
}
