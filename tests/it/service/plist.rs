//! A minimal XML property-list reader for the launchd test: enough to prove the file is well
//! formed, typed, and holds the expected keys, without an XML dependency.

/// A minimal XML property-list reader: enough to prove the file is well formed and typed.
#[derive(Debug, Clone, PartialEq)]
pub enum Plist {
    Dict(Vec<(String, Plist)>),
    Array(Vec<Plist>),
    String(String),
    Integer(i64),
    Bool(bool),
}

pub struct Xml<'a> {
    rest: &'a str,
}

impl<'a> Xml<'a> {
    /// Skips whitespace, the XML declaration, the doctype and comments.
    fn skip(&mut self) {
        loop {
            self.rest = self.rest.trim_start();
            let end = if self.rest.starts_with("<?") {
                self.rest.find("?>").map(|i| i + 2)
            } else if self.rest.starts_with("<!--") {
                self.rest.find("-->").map(|i| i + 3)
            } else if self.rest.starts_with("<!DOCTYPE") {
                self.rest.find('>').map(|i| i + 1)
            } else {
                None
            };
            match end {
                Some(i) => self.rest = &self.rest[i..],
                None => return,
            }
        }
    }

    fn tag(&mut self) -> &'a str {
        self.skip();
        assert!(
            self.rest.starts_with('<'),
            "expected a tag at {:.40}",
            self.rest
        );
        let end = self.rest.find('>').expect("unterminated tag");
        let t = &self.rest[1..end];
        self.rest = &self.rest[end + 1..];
        t
    }

    fn text_until(&mut self, close: &str) -> String {
        let end = self.rest.find(close).expect("closing tag");
        let t = &self.rest[..end];
        assert!(!t.contains('<'), "markup inside text: {t}");
        self.rest = &self.rest[end + close.len()..];
        t.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&")
    }

    fn value(&mut self) -> Plist {
        let tag = self.tag();
        match tag {
            "true/" => Plist::Bool(true),
            "false/" => Plist::Bool(false),
            "string" => Plist::String(self.text_until("</string>")),
            "integer" => Plist::Integer(
                self.text_until("</integer>")
                    .trim()
                    .parse()
                    .expect("integer"),
            ),
            "array" => {
                let mut items = Vec::new();
                loop {
                    self.skip();
                    if self.rest.starts_with("</array>") {
                        self.rest = &self.rest["</array>".len()..];
                        return Plist::Array(items);
                    }
                    items.push(self.value());
                }
            }
            "dict" => {
                let mut entries = Vec::new();
                loop {
                    self.skip();
                    if self.rest.starts_with("</dict>") {
                        self.rest = &self.rest["</dict>".len()..];
                        return Plist::Dict(entries);
                    }
                    assert_eq!(self.tag(), "key");
                    let key = self.text_until("</key>");
                    entries.push((key, self.value()));
                }
            }
            other => panic!("unexpected tag <{other}>"),
        }
    }

    pub fn document(text: &'a str) -> Plist {
        let mut x = Xml { rest: text };
        assert_eq!(x.tag(), "plist version=\"1.0\"");
        let root = x.value();
        assert_eq!(x.tag(), "/plist");
        x.skip();
        assert!(x.rest.is_empty(), "trailing content: {}", x.rest);
        root
    }
}
