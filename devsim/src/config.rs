//! A running configuration: top-level lines, each with indented children (Cisco sections,
//! Huawei views). Junos keeps flat `set` lines and uses only the top level.

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Block {
    pub line: String,
    pub children: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RunningConfig {
    pub blocks: Vec<Block>,
}

impl RunningConfig {
    /// Adds or finds a top-level line; returns its index.
    pub fn upsert(&mut self, line: &str) -> usize {
        if let Some(i) = self.blocks.iter().position(|b| b.line == line) {
            return i;
        }
        self.blocks.push(Block {
            line: line.to_string(),
            children: Vec::new(),
        });
        self.blocks.len() - 1
    }

    /// Replaces the top-level line that starts with `keyword` (e.g. `hostname `), or adds it.
    pub fn replace_keyword(&mut self, keyword: &str, line: &str) {
        match self.blocks.iter_mut().find(|b| b.line.starts_with(keyword)) {
            Some(b) => b.line = line.to_string(),
            None => self.blocks.insert(
                0,
                Block {
                    line: line.to_string(),
                    children: Vec::new(),
                },
            ),
        }
    }

    pub fn add_child(&mut self, parent: usize, line: &str) {
        let children = &mut self.blocks[parent].children;
        if !children.iter().any(|c| c == line) {
            children.push(line.to_string());
        }
    }

    /// `no X` / `undo X` / `delete X`: removes matching lines in scope, top level when `parent`
    /// is None. A line matches when it equals `what` or starts with `what` and a space.
    pub fn remove(&mut self, parent: Option<usize>, what: &str) {
        let hit = |l: &str| l == what || l.starts_with(&format!("{what} "));
        match parent {
            Some(p) => self.blocks[p].children.retain(|c| !hit(c)),
            None => self.blocks.retain(|b| !hit(&b.line)),
        }
    }

    pub fn render(&self, indent: &str, separator: Option<&str>) -> Vec<String> {
        let mut out = Vec::new();
        for b in &self.blocks {
            out.push(b.line.clone());
            out.extend(b.children.iter().map(|c| format!("{indent}{c}")));
            if let Some(sep) = separator {
                out.push(sep.to_string());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_keep_their_children_and_removal_is_scoped() {
        let mut c = RunningConfig::default();
        let i = c.upsert("interface Gi1");
        c.add_child(i, "description uplink");
        c.add_child(i, "description uplink");
        c.upsert("ntp server 192.0.2.1");
        assert_eq!(c.upsert("interface Gi1"), i);
        assert_eq!(
            c.render(" ", None),
            [
                "interface Gi1",
                " description uplink",
                "ntp server 192.0.2.1"
            ]
        );
        c.remove(Some(i), "description");
        c.remove(None, "ntp server");
        assert_eq!(c.render(" ", Some("!")), ["interface Gi1", "!"]);
    }
}
