//! The seccomp policy: reading and validating the JSON policy files of the top-level
//! `seccomp/` folder (hatchery's own `default` and `strict`, embedded in the binary, or
//! an operator's file named by `--seccomp-policy`), and the lists of what a policy
//! blocks and allows.
//!
//! Runs in the zygote, once at start-up: a policy that cannot work is refused there,
//! before the daemon serves anyone, not in a sandbox that would have to report it. The
//! reader is strict (unknown fields, unknown syscall or errno names, a syscall named
//! twice, conditions that can never match are all errors), so that a typo is an error
//! rather than a rule that silently does nothing. Turning the validated rules into BPF
//! is `bpf`'s work ([`SeccompPolicy::compile`]).

use std::collections::BTreeMap;

use nix::errno::Errno;
use seccompiler::{SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};
use serde::Deserialize;

use super::syscalls::{is_known_syscall, native_number, NATIVE_SYSCALLS};
use super::SeccompError;

/// The default policy, as shipped in `seccomp/default.json`.
///
/// ```
/// assert!(hatchery::seccomp::DEFAULT_POLICY.contains("\"mount\""));
/// ```
pub const DEFAULT_POLICY: &str = include_str!("../../seccomp/default.json");

/// The strict policy, as shipped in `seccomp/strict.json`: an allowlist, with `ENOSYS`
/// for every syscall it does not name.
///
/// ```
/// assert!(hatchery::seccomp::STRICT_POLICY.contains("\"default_action\""));
/// ```
pub const STRICT_POLICY: &str = include_str!("../../seccomp/strict.json");

/// The only policy file version this build reads.
pub(super) const POLICY_VERSION: u32 = 1;

/// A parsed and validated seccomp policy: a default action for the syscalls no rule
/// names, plus rules that allow or refuse syscalls.
///
/// ```
/// use hatchery::seccomp::SeccompPolicy;
/// let policy = SeccompPolicy::default_policy().unwrap();
/// let blocked = policy.blocked_syscalls();
/// assert!(blocked.contains(&("mount".to_string(), libc::EPERM)));
/// assert!(blocked.contains(&("clone3".to_string(), libc::ENOSYS)));
/// ```
#[derive(Debug, Clone)]
pub struct SeccompPolicy {
    pub(super) default: Action,
    pub(super) rules: Vec<Rule>,
    /// One of hatchery's own policies, whose rules are known to allow what a warm-pool
    /// sandbox's init does after installing it (see [`CompiledSeccomp::fits_pooled_init`](super::CompiledSeccomp::fits_pooled_init)).
    pub(super) own: bool,
}

/// One validated rule: its syscalls (checked to exist on some supported architecture,
/// each named by one rule only), the action and when it applies.
#[derive(Debug, Clone)]
pub(super) struct Rule {
    pub(super) syscalls: Vec<String>,
    pub(super) action: Action,
    pub(super) when: When,
}

/// What a matching syscall gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    Allow,
    Errno(Errno),
    KillProcess,
}

impl Action {
    pub(super) fn seccomp_action(self) -> SeccompAction {
        match self {
            Action::Allow => SeccompAction::Allow,
            Action::Errno(errno) => SeccompAction::Errno(errno as u32),
            Action::KillProcess => SeccompAction::KillProcess,
        }
    }

    /// The filter's return value for this action.
    pub(super) fn ret_value(self) -> u32 {
        match self {
            Action::Allow => libc::SECCOMP_RET_ALLOW,
            Action::Errno(errno) => libc::SECCOMP_RET_ERRNO | errno as u32,
            Action::KillProcess => libc::SECCOMP_RET_KILL_PROCESS,
        }
    }
}

/// When a rule's action applies to its syscalls.
#[derive(Debug, Clone)]
pub(super) enum When {
    /// On every call.
    Always,
    /// When any one of the conditions holds.
    Any(Vec<SeccompCondition>),
    /// When all of the conditions hold.
    All(Vec<SeccompCondition>),
}

impl When {
    /// The seccompiler rule chain: rules are OR'ed, conditions within a rule AND'ed, and
    /// an empty chain matches every call.
    pub(super) fn seccomp_rules(&self) -> Result<Vec<SeccompRule>, SeccompError> {
        match self {
            When::Always => Ok(Vec::new()),
            When::Any(conditions) => conditions
                .iter()
                .map(|condition| SeccompRule::new(vec![condition.clone()]))
                .collect::<Result<_, _>>()
                .map_err(SeccompError::Backend),
            When::All(conditions) => Ok(vec![
                SeccompRule::new(conditions.clone()).map_err(SeccompError::Backend)?
            ]),
        }
    }
}

// The file format. Every struct refuses unknown fields, so a typo is an error rather than
// a rule that silently does nothing.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    version: u32,
    #[serde(default, rename = "comment")]
    _comment: Option<String>,
    #[serde(default)]
    default_action: Option<DefaultActionFile>,
    rules: Vec<RuleFile>,
}

/// What a syscall no rule names gets. No `kill_process`: an allowlist must answer a
/// syscall newer than itself with an errno, so that libc falls back instead of dying.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum DefaultActionFile {
    Allow,
    Errno(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default, rename = "comment")]
    _comment: Option<String>,
    syscalls: Vec<String>,
    action: ActionFile,
    #[serde(default)]
    if_any: Option<Vec<ConditionFile>>,
    #[serde(default)]
    if_all: Option<Vec<ConditionFile>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum ActionFile {
    Allow,
    Errno(String),
    KillProcess,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionFile {
    arg: u8,
    width: u8,
    op: OpFile,
    value: NumberFile,
    #[serde(default)]
    mask: Option<NumberFile>,
    #[serde(default, rename = "comment")]
    _comment: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum OpFile {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    MaskedEq,
    BitsSet,
}

/// A number written either as a JSON integer or as a string (`"0x5412"` or `"21522"`).
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberFile {
    Integer(u64),
    Text(String),
}

impl NumberFile {
    fn value(&self) -> Result<u64, String> {
        match self {
            NumberFile::Integer(value) => Ok(*value),
            NumberFile::Text(text) => {
                let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => text.parse(),
                };
                parsed.map_err(|_| format!("invalid number {text:?}"))
            }
        }
    }
}

impl SeccompPolicy {
    /// Parses and validates [`DEFAULT_POLICY`].
    ///
    /// ```
    /// let policy = hatchery::seccomp::SeccompPolicy::default_policy().unwrap();
    /// assert!(policy.compile().is_ok());
    /// ```
    pub fn default_policy() -> Result<SeccompPolicy, SeccompError> {
        SeccompPolicy::from_json(DEFAULT_POLICY).map(SeccompPolicy::own)
    }

    /// Parses and validates [`STRICT_POLICY`].
    ///
    /// ```
    /// let policy = hatchery::seccomp::SeccompPolicy::strict_policy().unwrap();
    /// assert!(policy.blocked_syscalls().contains(&("syslog".to_string(), libc::EPERM)));
    /// ```
    pub fn strict_policy() -> Result<SeccompPolicy, SeccompError> {
        SeccompPolicy::from_json(STRICT_POLICY).map(SeccompPolicy::own)
    }

    fn own(self) -> SeccompPolicy {
        SeccompPolicy { own: true, ..self }
    }

    /// A built-in policy by name: `default` or `strict`.
    ///
    /// ```
    /// use hatchery::seccomp::{SeccompError, SeccompPolicy};
    /// assert!(SeccompPolicy::builtin("strict").is_ok());
    /// assert!(matches!(SeccompPolicy::builtin("lax"), Err(SeccompError::UnknownBuiltin(_))));
    /// ```
    pub fn builtin(name: &str) -> Result<SeccompPolicy, SeccompError> {
        match name {
            "default" => SeccompPolicy::default_policy(),
            "strict" => SeccompPolicy::strict_policy(),
            other => Err(SeccompError::UnknownBuiltin(other.to_string())),
        }
    }

    /// Parses and validates a policy in the format of `seccomp/README.md`.
    ///
    /// Strict: unknown fields, unknown syscall or errno names, a syscall named twice and
    /// conditions that cannot match are all errors. A syscall that exists only on another
    /// supported architecture (say `iopl` on aarch64) is accepted and skipped when
    /// compiling.
    ///
    /// ```
    /// use hatchery::seccomp::SeccompPolicy;
    /// let policy = SeccompPolicy::from_json(
    ///     r#"{"version": 1, "rules": [{"syscalls": ["mount"], "action": {"errno": "EPERM"}}]}"#,
    /// )
    /// .unwrap();
    /// assert_eq!(policy.blocked_syscalls(), vec![("mount".to_string(), libc::EPERM)]);
    /// ```
    pub fn from_json(text: &str) -> Result<SeccompPolicy, SeccompError> {
        let file: PolicyFile = serde_json::from_str(text).map_err(SeccompError::Json)?;
        if file.version != POLICY_VERSION {
            return Err(SeccompError::Version(file.version));
        }
        let default = match file.default_action {
            None | Some(DefaultActionFile::Allow) => Action::Allow,
            Some(DefaultActionFile::Errno(name)) => match errno_from_name(&name) {
                Some(errno) => Action::Errno(errno),
                None => return Err(SeccompError::UnknownDefaultErrno(name)),
            },
        };
        let mut first_rule_of = BTreeMap::new();
        let rules = file
            .rules
            .into_iter()
            .enumerate()
            .map(|(index, rule)| validate_rule(index, rule, default, &mut first_rule_of))
            .collect::<Result<_, _>>()?;
        Ok(SeccompPolicy {
            default,
            rules,
            own: false,
        })
    }

    /// The syscalls this policy refuses on every call on the running architecture, each
    /// with the errno the caller gets: first those the rules name, in file order, then,
    /// when the default action is an errno, every other syscall of the architecture
    /// (by number).
    ///
    /// Rules with argument conditions (`clone`, `ioctl`, `personality` in the default
    /// policy) and `kill_process` rules are not listed: no single errno describes them.
    ///
    /// ```
    /// let blocked = hatchery::seccomp::SeccompPolicy::default_policy().unwrap().blocked_syscalls();
    /// assert!(!blocked.iter().any(|(name, _)| name == "read"));
    /// ```
    pub fn blocked_syscalls(&self) -> Vec<(String, i32)> {
        let mut blocked: Vec<(String, i32)> = self
            .rules
            .iter()
            .filter(|rule| matches!(rule.when, When::Always))
            .filter_map(|rule| match rule.action {
                Action::Errno(errno) => Some((rule, errno as i32)),
                Action::Allow | Action::KillProcess => None,
            })
            .flat_map(|(rule, errno)| {
                rule.syscalls
                    .iter()
                    .filter(|name| native_number(name).is_some())
                    .map(move |name| (name.clone(), errno))
            })
            .collect();
        if let Action::Errno(errno) = self.default {
            blocked.extend(
                self.unnamed_native_syscalls()
                    .map(|name| (name.to_string(), errno as i32)),
            );
        }
        blocked
    }

    /// The syscalls this policy allows whatever their arguments on the running
    /// architecture, in file order, then (when the default action is allow) every other
    /// syscall of the architecture, by number.
    ///
    /// ```
    /// let allowed = hatchery::seccomp::SeccompPolicy::strict_policy().unwrap().allowed_syscalls();
    /// assert!(allowed.iter().any(|name| name == "read"));
    /// assert!(!allowed.iter().any(|name| name == "mount"));
    /// ```
    pub fn allowed_syscalls(&self) -> Vec<String> {
        let mut allowed: Vec<String> = self
            .rules
            .iter()
            .filter(|rule| rule.action == Action::Allow)
            .flat_map(|rule| rule.syscalls.iter())
            .filter(|name| native_number(name).is_some())
            .cloned()
            .collect();
        if self.default == Action::Allow {
            allowed.extend(self.unnamed_native_syscalls().map(str::to_string));
        }
        allowed
    }

    /// Syscalls of the running architecture that no rule names, by number.
    fn unnamed_native_syscalls(&self) -> impl Iterator<Item = &'static str> + '_ {
        let mut natives: Vec<(&'static str, i64)> = NATIVE_SYSCALLS
            .iter()
            .map(|&(sys_name, number)| (&sys_name["SYS_".len()..], number))
            .collect();
        natives.sort_by_key(|&(_, number)| number);
        natives.into_iter().filter_map(move |(name, _)| {
            let named = self
                .rules
                .iter()
                .any(|rule| rule.syscalls.iter().any(|named| named == name));
            (!named).then_some(name)
        })
    }
}

/// Validates one rule of the file; `default` is the policy's default action and
/// `first_rule_of` maps each syscall seen so far to the rule that named it.
fn validate_rule(
    index: usize,
    rule: RuleFile,
    default: Action,
    first_rule_of: &mut BTreeMap<String, usize>,
) -> Result<Rule, SeccompError> {
    let invalid = |problem: String| SeccompError::InvalidRule {
        rule: index,
        problem,
    };
    if rule.syscalls.is_empty() {
        return Err(invalid("it names no syscalls".into()));
    }
    for name in &rule.syscalls {
        if !is_known_syscall(name) {
            return Err(SeccompError::UnknownSyscall {
                rule: index,
                name: name.clone(),
            });
        }
        if let Some(&first) = first_rule_of.get(name) {
            return Err(SeccompError::DuplicateSyscall {
                rule: index,
                first,
                name: name.clone(),
            });
        }
        first_rule_of.insert(name.clone(), index);
    }

    let action = match &rule.action {
        ActionFile::Errno(name) => match errno_from_name(name) {
            Some(errno) => Action::Errno(errno),
            None => {
                return Err(SeccompError::UnknownErrno {
                    rule: index,
                    name: name.clone(),
                })
            }
        },
        ActionFile::KillProcess => Action::KillProcess,
        // An allow rule with conditions would have to say what happens when they do not
        // hold; one in a default-allow policy would change nothing and hide a mistake.
        ActionFile::Allow if rule.if_any.is_some() || rule.if_all.is_some() => {
            return Err(invalid("an allow rule takes no conditions".into()));
        }
        ActionFile::Allow if default == Action::Allow => {
            return Err(invalid(
                "an allow rule needs a default_action other than allow".into(),
            ));
        }
        ActionFile::Allow => Action::Allow,
    };

    let conditions = |list: Vec<ConditionFile>, key: &str| {
        if list.is_empty() {
            return Err(invalid(format!("{key} is empty")));
        }
        list.into_iter()
            .enumerate()
            .map(|(position, condition)| {
                validate_condition(condition)
                    .map_err(|problem| invalid(format!("{key}[{position}]: {problem}")))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let when = match (rule.if_any, rule.if_all) {
        (None, None) => When::Always,
        (Some(list), None) => When::Any(conditions(list, "if_any")?),
        (None, Some(list)) => When::All(conditions(list, "if_all")?),
        (Some(_), Some(_)) => return Err(invalid("if_any and if_all cannot be combined".into())),
    };

    Ok(Rule {
        syscalls: rule.syscalls,
        action,
        when,
    })
}

/// Validates one argument condition and turns it into seccompiler's form.
fn validate_condition(condition: ConditionFile) -> Result<SeccompCondition, String> {
    const MAX_ARG: u8 = 5;
    if condition.arg > MAX_ARG {
        return Err(format!(
            "arg {} is out of range 0..={MAX_ARG}",
            condition.arg
        ));
    }
    let (arg_len, limit) = match condition.width {
        32 => (SeccompCmpArgLen::Dword, u64::from(u32::MAX)),
        64 => (SeccompCmpArgLen::Qword, u64::MAX),
        other => return Err(format!("width {other} is not 32 or 64")),
    };
    let value = condition.value.value()?;
    if value > limit {
        return Err(format!(
            "value {value:#x} does not fit in {} bits",
            condition.width
        ));
    }
    let mask = condition.mask.as_ref().map(NumberFile::value).transpose()?;
    let op = match (condition.op, mask) {
        (OpFile::MaskedEq, None) => return Err("masked_eq needs a mask".into()),
        (OpFile::MaskedEq, Some(mask)) if mask > limit => {
            return Err(format!(
                "mask {mask:#x} does not fit in {} bits",
                condition.width
            ));
        }
        (OpFile::MaskedEq, Some(mask)) if value & !mask != 0 => {
            return Err(format!(
                "value {value:#x} has bits outside mask {mask:#x}, so it never matches"
            ));
        }
        (OpFile::MaskedEq, Some(mask)) => SeccompCmpOp::MaskedEq(mask),
        (_, Some(_)) => return Err("mask belongs to masked_eq only".into()),
        (OpFile::BitsSet, None) if value == 0 => {
            return Err("bits_set needs a non-zero value".into())
        }
        (OpFile::BitsSet, None) => SeccompCmpOp::MaskedEq(value),
        (OpFile::Eq, None) => SeccompCmpOp::Eq,
        (OpFile::Ne, None) => SeccompCmpOp::Ne,
        (OpFile::Lt, None) => SeccompCmpOp::Lt,
        (OpFile::Le, None) => SeccompCmpOp::Le,
        (OpFile::Gt, None) => SeccompCmpOp::Gt,
        (OpFile::Ge, None) => SeccompCmpOp::Ge,
    };
    SeccompCondition::new(condition.arg, arg_len, op, value).map_err(|err| err.to_string())
}

/// Errno names a policy may use.
fn errno_from_name(name: &str) -> Option<Errno> {
    Some(match name {
        "EPERM" => Errno::EPERM,
        "ENOENT" => Errno::ENOENT,
        "ESRCH" => Errno::ESRCH,
        "EINTR" => Errno::EINTR,
        "EIO" => Errno::EIO,
        "ENXIO" => Errno::ENXIO,
        "E2BIG" => Errno::E2BIG,
        "ENOEXEC" => Errno::ENOEXEC,
        "EBADF" => Errno::EBADF,
        "EAGAIN" => Errno::EAGAIN,
        "ENOMEM" => Errno::ENOMEM,
        "EACCES" => Errno::EACCES,
        "EFAULT" => Errno::EFAULT,
        "EBUSY" => Errno::EBUSY,
        "EEXIST" => Errno::EEXIST,
        "ENODEV" => Errno::ENODEV,
        "EINVAL" => Errno::EINVAL,
        "ENOTTY" => Errno::ENOTTY,
        "ENOSPC" => Errno::ENOSPC,
        "EROFS" => Errno::EROFS,
        "ENOSYS" => Errno::ENOSYS,
        "EOPNOTSUPP" => Errno::EOPNOTSUPP,
        "EAFNOSUPPORT" => Errno::EAFNOSUPPORT,
        "EPROTONOSUPPORT" => Errno::EPROTONOSUPPORT,
        _ => return None,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::seccomp::bpf::native_arch;
    use crate::seccomp::emulator::{verdict, EPERM};

    pub(in crate::seccomp) fn one_rule(rule: &str) -> Result<SeccompPolicy, SeccompError> {
        SeccompPolicy::from_json(&format!(r#"{{"version": 1, "rules": [{rule}]}}"#))
    }

    #[test]
    fn blocked_syscalls_lists_the_unconditional_rules() {
        let blocked = SeccompPolicy::default_policy().unwrap().blocked_syscalls();
        let has = |name: &str, errno: i32| blocked.contains(&(name.to_string(), errno));
        assert!(has("mount", libc::EPERM));
        assert!(has("chroot", libc::EPERM));
        assert!(has("unshare", libc::EPERM));
        assert!(has("clone3", libc::ENOSYS));
        assert!(has("io_uring_setup", libc::EPERM));
        #[cfg(target_arch = "x86_64")]
        assert!(has("iopl", libc::EPERM));
        for allowed in [
            "read",
            "clone",
            "ioctl",
            "personality",
            "close_range",
            "faccessat2",
        ] {
            assert!(
                !blocked.iter().any(|(name, _)| name == allowed),
                "{allowed} listed"
            );
        }
        let mut names: Vec<_> = blocked.iter().map(|(name, _)| name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), blocked.len(), "a syscall listed twice");
    }

    #[test]
    fn unknown_syscall_is_rejected() {
        let err = one_rule(r#"{"syscalls": ["mount", "foo"], "action": {"errno": "EPERM"}}"#)
            .unwrap_err();
        assert!(
            matches!(&err, SeccompError::UnknownSyscall { rule: 0, name } if name == "foo"),
            "{err:?}"
        );
        assert_eq!(err.to_string(), r#"unknown syscall name "foo" in rules[0]"#);
        // Names are exact: no prefix, no other case.
        for name in ["SYS_mount", "Mount", ""] {
            let rule = format!(r#"{{"syscalls": ["{name}"], "action": {{"errno": "EPERM"}}}}"#);
            assert!(
                matches!(one_rule(&rule), Err(SeccompError::UnknownSyscall { .. })),
                "{name}"
            );
        }
    }

    #[test]
    fn syscall_of_another_architecture_is_accepted_and_skipped_when_absent() {
        let policy =
            one_rule(r#"{"syscalls": ["iopl", "mount"], "action": {"errno": "EPERM"}}"#).unwrap();
        let names: Vec<_> = policy
            .blocked_syscalls()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        #[cfg(target_arch = "x86_64")]
        assert_eq!(names, ["iopl", "mount"]);
        #[cfg(target_arch = "aarch64")]
        assert_eq!(names, ["mount"]);
    }

    #[test]
    fn unknown_errno_is_rejected() {
        let err =
            one_rule(r#"{"syscalls": ["mount"], "action": {"errno": "EWHATEVER"}}"#).unwrap_err();
        assert!(
            matches!(&err, SeccompError::UnknownErrno { name, .. } if name == "EWHATEVER"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            r#"unknown errno name "EWHATEVER" in rules[0]"#
        );
        let lowercase = one_rule(r#"{"syscalls": ["mount"], "action": {"errno": "eperm"}}"#);
        assert!(matches!(lowercase, Err(SeccompError::UnknownErrno { .. })));
    }

    #[test]
    fn unknown_fields_and_bad_shapes_are_rejected() {
        let cases = [
            r#"{"version": 1, "rules": [], "default": "allow"}"#,
            r#"{"version": 1, "rules": [{"syscalls": ["mount"], "action": {"errno": "EPERM"}, "args": []}]}"#,
            r#"{"version": 1, "rules": [{"syscalls": ["ioctl"], "action": {"errno": "EPERM"},
                "if_any": [{"arg": 1, "width": 32, "op": "eq", "value": 1, "index": 2}]}]}"#,
            r#"{"version": 1, "rules": [{"syscalls": ["mount"], "action": {"errno": "EPERM", "x": 1}}]}"#,
            r#"{"version": 1, "rules": [{"syscalls": ["mount"], "action": "permit"}]}"#,
            r#"{"version": 1, "rules": [{"syscalls": ["mount"]}]}"#,
            r#"{"version": 1, "default_action": "kill_process", "rules": []}"#,
            r#"{"version": 1, "default_action": {"errno": "ENOSYS", "x": 1}, "rules": []}"#,
            r#"{"rules": []}"#,
            r#"{"version": 1, "rules": [{"syscalls": ["ioctl"], "action": {"errno": "EPERM"},
                "if_any": [{"arg": 1, "width": 32, "op": "is", "value": 1}]}]}"#,
            r#"{"version": 1, "rules": [{"syscalls": ["ioctl"], "action": {"errno": "EPERM"},
                "if_any": [{"arg": 1, "width": 32, "op": "eq", "value": -1}]}]}"#,
            "not json",
        ];
        for case in cases {
            let err = SeccompPolicy::from_json(case).unwrap_err();
            assert!(matches!(err, SeccompError::Json(_)), "{case}: {err:?}");
            assert_eq!(err.to_string(), "invalid seccomp policy json");
            assert!(std::error::Error::source(&err).is_some());
        }
    }

    #[test]
    fn version_must_be_one() {
        let err = SeccompPolicy::from_json(r#"{"version": 2, "rules": []}"#).unwrap_err();
        assert!(matches!(err, SeccompError::Version(2)), "{err:?}");
    }

    #[test]
    fn a_syscall_may_appear_in_one_rule_only() {
        let text = r#"{"version": 1, "rules": [
            {"syscalls": ["mount", "chroot"], "action": {"errno": "EPERM"}},
            {"syscalls": ["chroot"], "action": {"errno": "ENOSYS"}}]}"#;
        let err = SeccompPolicy::from_json(text).unwrap_err();
        assert!(
            matches!(&err, SeccompError::DuplicateSyscall { rule: 1, first: 0, name } if name == "chroot"),
            "{err:?}"
        );
        let twice = one_rule(r#"{"syscalls": ["mount", "mount"], "action": {"errno": "EPERM"}}"#);
        assert!(matches!(
            twice,
            Err(SeccompError::DuplicateSyscall {
                rule: 0,
                first: 0,
                ..
            })
        ));
    }

    #[test]
    fn conditions_that_cannot_work_are_rejected() {
        let cases = [
            (r#""if_any": []"#, "if_any is empty"),
            (
                r#""if_any": [{"arg": 6, "width": 32, "op": "eq", "value": 1}]"#,
                "out of range",
            ),
            (
                r#""if_any": [{"arg": 1, "width": 16, "op": "eq", "value": 1}]"#,
                "not 32 or 64",
            ),
            (
                r#""if_any": [{"arg": 1, "width": 32, "op": "eq", "value": "0x100000000"}]"#,
                "does not fit",
            ),
            (
                r#""if_any": [{"arg": 1, "width": 32, "op": "eq", "value": "0xzz"}]"#,
                "invalid number",
            ),
            (
                r#""if_any": [{"arg": 1, "width": 32, "op": "eq", "value": 1, "mask": 1}]"#,
                "masked_eq only",
            ),
            (
                r#""if_any": [{"arg": 1, "width": 32, "op": "masked_eq", "value": 1}]"#,
                "needs a mask",
            ),
            (
                r#""if_any": [{"arg": 1, "width": 64, "op": "masked_eq", "value": 3, "mask": 1}]"#,
                "never matches",
            ),
            (
                r#""if_any": [{"arg": 1, "width": 32, "op": "bits_set", "value": 0}]"#,
                "non-zero",
            ),
            (
                r#""if_any": [{"arg": 1, "width": 32, "op": "eq", "value": 1}],
                   "if_all": [{"arg": 1, "width": 32, "op": "eq", "value": 2}]"#,
                "cannot be combined",
            ),
        ];
        for (conditions, expected) in cases {
            let rule = format!(
                r#"{{"syscalls": ["ioctl"], "action": {{"errno": "EPERM"}}, {conditions}}}"#
            );
            let err = one_rule(&rule).unwrap_err();
            assert!(
                matches!(err, SeccompError::InvalidRule { rule: 0, .. }),
                "{conditions}: {err:?}"
            );
            assert!(err.to_string().contains(expected), "{conditions}: {err}");
        }
        let empty = one_rule(r#"{"syscalls": [], "action": {"errno": "EPERM"}}"#).unwrap_err();
        assert!(empty.to_string().contains("names no syscalls"), "{empty}");
    }

    #[test]
    fn numbers_may_be_decimal_hex_or_integers() {
        for value in [r#""0x5412""#, r#""0X5412""#, r#""21522""#, "21522"] {
            let rule = format!(
                r#"{{"syscalls": ["ioctl"], "action": {{"errno": "EPERM"}},
                    "if_any": [{{"arg": 1, "width": 32, "op": "eq", "value": {value}}}]}}"#
            );
            let compiled = one_rule(&rule).unwrap().compile().unwrap();
            let (_, audit_arch) = native_arch().unwrap();
            assert_eq!(
                verdict(
                    &compiled,
                    libc::SYS_ioctl,
                    audit_arch,
                    [0, 0x5412, 0, 0, 0, 0]
                ),
                EPERM
            );
        }
    }

    #[test]
    fn allow_rules_and_default_actions_are_checked() {
        let with_default = |default: &str, rule: &str| {
            SeccompPolicy::from_json(&format!(
                r#"{{"version": 1, "default_action": {default}, "rules": [{rule}]}}"#
            ))
        };
        let err = one_rule(r#"{"syscalls": ["read"], "action": "allow"}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid rules[0]: an allow rule needs a default_action other than allow"
        );
        let err =
            with_default(r#""allow""#, r#"{"syscalls": ["read"], "action": "allow"}"#).unwrap_err();
        assert!(matches!(err, SeccompError::InvalidRule { rule: 0, .. }));
        let err = with_default(
            r#"{"errno": "ENOSYS"}"#,
            r#"{"syscalls": ["ioctl"], "action": "allow",
                "if_any": [{"arg": 1, "width": 32, "op": "eq", "value": 1}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid rules[0]: an allow rule takes no conditions"
        );
        let err = with_default(
            r#"{"errno": "ENOPE"}"#,
            r#"{"syscalls": ["read"], "action": "allow"}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"unknown errno name "ENOPE" in default_action"#
        );
        let err = with_default(
            r#"{"errno": "ENOSYS"}"#,
            r#"{"syscalls": ["read", "not_a_syscall"], "action": "allow"}"#,
        )
        .unwrap_err();
        assert!(matches!(err, SeccompError::UnknownSyscall { rule: 0, .. }));
        // An explicit "allow" default is the same as none.
        let policy = with_default(
            r#""allow""#,
            r#"{"syscalls": ["mount"], "action": {"errno": "EPERM"}}"#,
        )
        .unwrap();
        assert_eq!(
            policy.blocked_syscalls(),
            [("mount".to_string(), libc::EPERM)]
        );
        assert!(matches!(
            SeccompPolicy::builtin("/etc/x.json"),
            Err(SeccompError::UnknownBuiltin(_))
        ));
    }

    /// The strict policy is checked against the architecture's syscall table: what it
    /// leaves to the default (ENOSYS) is exactly this list, so a new libc that knows more
    /// syscalls makes this test fail until someone decides about them.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn strict_policy_leaves_out_exactly_these() {
        let policy = SeccompPolicy::strict_policy().unwrap();
        let mut left_out: Vec<&str> = policy.unnamed_native_syscalls().collect();
        left_out.sort_unstable();
        assert_eq!(
            left_out,
            [
                "_sysctl",
                "afs_syscall",
                "epoll_ctl_old",
                "epoll_wait_old",
                "fanotify_mark",
                "get_thread_area",
                "getpmsg",
                "kcmp",
                "memfd_secret",
                "migrate_pages",
                "modify_ldt",
                "move_pages",
                "process_madvise",
                "process_mrelease",
                "putpmsg",
                "quotactl_fd",
                "remap_file_pages",
                "security",
                "set_mempolicy_home_node",
                "set_thread_area",
                "setdomainname",
                "sethostname",
                "sysfs",
                "tuxcall",
                "ustat",
                "vserver",
            ]
        );
    }
}
