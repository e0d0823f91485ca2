//! What a device described by data prints and knows (see `generic`, which runs it, and
//! `models`, which holds the devices).

/// Prompt templates: `{h}` hostname, `{u}` user, `{s}` section label, `{n}` a counter that
/// grows with every command, `{*}` the model's unsaved-changes marker while running differs
/// from startup, `{c}` the first of the model's candidate marks while the candidate equals the
/// running configuration, the second once it differs.
#[derive(Debug)]
pub struct Prompts {
    pub user: &'static str,
    pub enable: &'static str,
    pub config: &'static str,
    pub section: &'static str,
}

#[derive(Debug)]
pub struct Commit {
    pub command: &'static str,
    /// Prints the candidate's changes to the running configuration (`+`/`-` lines); empty:
    /// the device has no such command here.
    pub compare: &'static str,
    pub text: &'static str,
    pub abort: &'static str,
    pub abort_text: &'static str,
    /// The commit also leaves configuration mode (SR Linux `commit now`).
    pub commit_leaves: bool,
    /// The abort also leaves configuration mode (IOS-XR `abort`).
    pub abort_leaves: bool,
    /// Whether a commit also makes the configuration persistent.
    pub persists: bool,
}

#[derive(Debug)]
pub struct ConfigModel {
    pub enter: &'static str,
    pub enter_text: &'static str,
    /// Asked the first time configuration mode is entered (Cisco ASA's error reporting).
    pub enter_question: Option<&'static str>,
    pub exit: &'static str,
    pub exit_text: &'static str,
    /// Commands that open a section: keyword, and the section's label (empty: the line's last
    /// word).
    pub sections: &'static [(&'static str, &'static str)],
    /// First words of the configuration lines the device accepts.
    pub words: &'static [&'static str],
    pub commit: Option<Commit>,
}

#[derive(Debug)]
pub struct SaveModel {
    pub command: &'static str,
    /// Questions asked in turn, with the answer that goes on (anything else aborts).
    pub questions: &'static [(&'static str, &'static str)],
    pub text: &'static str,
    /// Only inside configuration mode (VyOS `save`).
    pub in_config: bool,
}

#[derive(Debug)]
pub struct Model {
    pub device_type: &'static str,
    pub banner: &'static str,
    /// A question between the banner and the first prompt, answered by any line.
    pub login_question: Option<&'static str>,
    pub prompts: Prompts,
    pub unsaved_marker: &'static str,
    pub candidate_marks: (&'static str, &'static str),
    /// The command to privileged mode; `None`: a session starts privileged.
    pub enable: Option<&'static str>,
    pub paging_off: &'static [&'static str],
    pub paging_reply: &'static str,
    /// Terminal set-up commands the device accepts without a word.
    pub accepted: &'static [&'static str],
    pub more: &'static str,
    pub more_erase: &'static str,
    /// The text for an unknown command; `{cmd}` is the command line.
    pub error: &'static str,
    /// Whether a caret line under the prompt comes first.
    pub caret: bool,
    pub version: (&'static str, &'static str),
    pub long_command: &'static str,
    pub show_config: &'static str,
    pub config: Option<ConfigModel>,
    /// Without a configuration mode: first words of configuration commands run at the prompt.
    pub exec_words: &'static [&'static str],
    /// Without a configuration mode: first words that open a block (its label is the line's
    /// last word) and that close it (FortiOS `config`/`edit`, `next`/`end`).
    pub exec_blocks: (&'static [&'static str], &'static [&'static str]),
    pub save: Option<SaveModel>,
    /// Lines a test pushes, and the text the configuration then shows.
    pub sample_config: &'static [&'static str],
    pub sample_shows: &'static str,
}

impl PartialEq for Model {
    fn eq(&self, other: &Self) -> bool {
        self.device_type == other.device_type
    }
}
impl Eq for Model {}
impl std::hash::Hash for Model {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.device_type.hash(state)
    }
}

/// A save command that asks nothing, with the text it prints.
pub const fn saves(command: &'static str, text: &'static str) -> Option<SaveModel> {
    Some(SaveModel {
        command,
        questions: &[],
        text,
        in_config: false,
    })
}
