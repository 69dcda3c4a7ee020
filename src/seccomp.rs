//! The workload's seccomp filter, kept as data: `seccomp/default.json` (a default-allow
//! denylist, what every sandbox gets) and `seccomp/strict.json` (an allowlist whose
//! unknown and unlisted syscalls get `ENOSYS`), both embedded in the binary.
//!
//! Runs in two places. The zygote parses, validates and compiles the policy once at
//! start-up ([`SeccompPolicy::default_policy`], [`SeccompPolicy::compile`]); each
//! sandboxed workload installs the compiled programs as its last step before `execve`
//! ([`CompiledSeccomp::apply`]), so the filter need allow nothing of the setup.
//!
//! The file format, and the reason for every blocked group, are in `seccomp/README.md`.
//! In short: a `default_action` (`"allow"` unless the file says otherwise) for every
//! syscall no rule names, and rules that name syscalls, an action (`"allow"`,
//! `{"errno": "EPERM"}` or `"kill_process"`) and optional argument conditions.
//!
//! Compiled shape: one program. It starts with an ABI guard (`abi_guard`) that refuses
//! foreign architectures and x32 syscall numbers, which per-syscall rules cannot see,
//! then finds the verdict of every syscall whose verdict does not depend on its
//! arguments by a binary search over the syscall numbers (`search_tree`): a few
//! comparisons per call, one return per distinct verdict (`shared_return_tree`, where
//! its jumps reach; else a return per leaf, `verdict_tree`), and cheap to install,
//! however long the allowlist. The leaf of
//! a syscall that rules with argument conditions name jumps instead to the block that
//! checks them: seccompiler's code for the conditional rules of one action, appended
//! after the tree (`link`). One program rather than one per action: every program
//! installed costs the kernel a validation, a JIT compilation and an action-cache
//! pass, and every filtered call runs each of them.

use std::collections::BTreeMap;

use nix::errno::Errno;
use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};
use serde::Deserialize;

use crate::sys::SysError;

/// The default policy, as shipped in `seccomp/default.json`.
///
/// ```
/// assert!(hatchery::seccomp::DEFAULT_POLICY.contains("\"mount\""));
/// ```
pub const DEFAULT_POLICY: &str = include_str!("../seccomp/default.json");

/// The strict policy, as shipped in `seccomp/strict.json`: an allowlist, with `ENOSYS`
/// for every syscall it does not name.
///
/// ```
/// assert!(hatchery::seccomp::STRICT_POLICY.contains("\"default_action\""));
/// ```
pub const STRICT_POLICY: &str = include_str!("../seccomp/strict.json");

/// The only policy file version this build reads.
const POLICY_VERSION: u32 = 1;

/// The most instructions the kernel accepts in one program (`BPF_MAXINSNS`).
const BPF_MAX_INSTRUCTIONS: usize = 4096;

/// Why a policy could not be read or compiled.
///
/// ```
/// use hatchery::seccomp::{SeccompError, SeccompPolicy};
/// let text = r#"{"version": 1, "rules": [{"syscalls": ["foo"], "action": {"errno": "EPERM"}}]}"#;
/// let err = SeccompPolicy::from_json(text).unwrap_err();
/// assert!(matches!(err, SeccompError::UnknownSyscall { .. }));
/// assert_eq!(err.to_string(), "unknown syscall name \"foo\" in rules[0]");
/// ```
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The text is not JSON of the policy's shape (this includes unknown fields).
    #[error("invalid seccomp policy json")]
    Json(#[source] serde_json::Error),
    /// The file's `version` is not one this build reads.
    #[error("unsupported seccomp policy version {0}, expected {POLICY_VERSION}")]
    Version(u32),
    /// A rule names a syscall that no supported architecture has.
    #[error("unknown syscall name {name:?} in rules[{rule}]")]
    UnknownSyscall {
        /// Index of the rule in the file's `rules` array.
        rule: usize,
        /// The name as written.
        name: String,
    },
    /// A rule's action names an errno this module does not know.
    #[error("unknown errno name {name:?} in rules[{rule}]")]
    UnknownErrno {
        /// Index of the rule in the file's `rules` array.
        rule: usize,
        /// The name as written.
        name: String,
    },
    /// A syscall appears in two rules (or twice in one), which would make its verdict
    /// depend on the order of the programs.
    #[error("syscall {name:?} in rules[{rule}] already appears in rules[{first}]")]
    DuplicateSyscall {
        /// Index of the rule that repeats it.
        rule: usize,
        /// Index of the rule that named it first.
        first: usize,
        /// The syscall's name.
        name: String,
    },
    /// A rule has the right shape but cannot work as written: no syscalls, a condition
    /// that can never match, a value wider than its width, and the like.
    #[error("invalid rules[{rule}]: {problem}")]
    InvalidRule {
        /// Index of the rule in the file's `rules` array.
        rule: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// `default_action` names an errno this module does not know.
    #[error("unknown errno name {0:?} in default_action")]
    UnknownDefaultErrno(String),
    /// A `--seccomp-policy` name that is neither a built-in policy nor a file path.
    #[error("unknown built-in seccomp policy {0:?}, expected default or strict")]
    UnknownBuiltin(String),
    /// hatchery compiles filters for x86_64 and aarch64 only.
    #[error("unsupported architecture {0} for seccomp filters")]
    UnsupportedArchitecture(&'static str),
    /// seccompiler refused to build a program.
    #[error("seccompiler backend error")]
    Backend(#[source] seccompiler::BackendError),
    /// A compiled program is longer than the kernel accepts.
    #[error("seccomp program of {0} instructions exceeds the kernel's limit of 4096")]
    TooLarge(usize),
}

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
    default: Action,
    rules: Vec<Rule>,
    /// One of hatchery's own policies, whose rules are known to allow what a warm-pool
    /// sandbox's init does after installing it (see [`CompiledSeccomp::fits_pooled_init`]).
    own: bool,
}

/// One validated rule: its syscalls (checked to exist on some supported architecture,
/// each named by one rule only), the action and when it applies.
#[derive(Debug, Clone)]
struct Rule {
    syscalls: Vec<String>,
    action: Action,
    when: When,
}

/// What a matching syscall gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Allow,
    Errno(Errno),
    KillProcess,
}

impl Action {
    fn seccomp_action(self) -> SeccompAction {
        match self {
            Action::Allow => SeccompAction::Allow,
            Action::Errno(errno) => SeccompAction::Errno(errno as u32),
            Action::KillProcess => SeccompAction::KillProcess,
        }
    }

    /// The filter's return value for this action.
    fn ret_value(self) -> u32 {
        match self {
            Action::Allow => libc::SECCOMP_RET_ALLOW,
            Action::Errno(errno) => libc::SECCOMP_RET_ERRNO | errno as u32,
            Action::KillProcess => libc::SECCOMP_RET_KILL_PROCESS,
        }
    }
}

/// When a rule's action applies to its syscalls.
#[derive(Debug, Clone)]
enum When {
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
    fn seccomp_rules(&self) -> Result<Vec<SeccompRule>, SeccompError> {
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

    /// Compiles the policy for the running architecture: one BPF program per distinct
    /// action, the first prefixed with the ABI guard. Done once, in the zygote.
    ///
    /// ```
    /// let compiled = hatchery::seccomp::SeccompPolicy::default_policy()
    ///     .unwrap()
    ///     .compile()
    ///     .unwrap();
    /// assert!(!compiled.programs().is_empty());
    /// ```
    pub fn compile(&self) -> Result<CompiledSeccomp, SeccompError> {
        let (target_arch, audit_arch) = native_arch()?;

        // The verdict of each syscall a rule names, where it does not depend on the
        // arguments; a conditional rule's syscalls are allowed here and refused by their
        // own program when the conditions hold. Conditional rules are grouped by action,
        // in the order the actions first appear in the file.
        let mut fixed: BTreeMap<u32, Leaf> = BTreeMap::new();
        let mut groups: Vec<(Action, BTreeMap<i64, Vec<SeccompRule>>)> = Vec::new();
        for rule in &self.rules {
            let numbers = rule.syscalls.iter().filter_map(|name| native_number(name));
            if matches!(rule.when, When::Always) {
                for number in numbers {
                    fixed.insert(number as u32, Leaf::Verdict(rule.action.ret_value()));
                }
                continue;
            }
            let chain = rule.when.seccomp_rules()?;
            let index = match groups.iter().position(|(action, _)| *action == rule.action) {
                Some(index) => index,
                None => {
                    groups.push((rule.action, BTreeMap::new()));
                    groups.len() - 1
                }
            };
            for number in numbers {
                fixed.insert(number as u32, Leaf::Conditions(index));
                groups[index].1.insert(number, chain.clone());
            }
        }

        let mut program = abi_guard(audit_arch);
        program.extend(search_tree(&segments(
            &fixed,
            Leaf::Verdict(self.default.ret_value()),
        )));
        let mut blocks = Vec::with_capacity(groups.len());
        for (action, rules) in groups {
            if rules.is_empty() {
                // Its rules name no syscall of this architecture: no leaf jumps to it.
                blocks.push(BpfProgram::new());
                continue;
            }
            let filter = SeccompFilter::new(
                rules,
                SeccompAction::Allow,
                action.seccomp_action(),
                target_arch,
            )
            .map_err(SeccompError::Backend)?;
            blocks.push(BpfProgram::try_from(filter).map_err(SeccompError::Backend)?);
        }
        let program = link(program, &blocks);
        if program.len() > BPF_MAX_INSTRUCTIONS {
            return Err(SeccompError::TooLarge(program.len()));
        }
        Ok(CompiledSeccomp {
            programs: vec![program],
            fits_pooled_init: self.own,
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

/// The number of the syscall `name` on the running architecture, if it has one.
///
/// ```
/// # #[cfg(target_arch = "x86_64")]
/// assert_eq!(hatchery::seccomp::syscall_number("mount"), Some(165));
/// assert_eq!(hatchery::seccomp::syscall_number("no_such_call"), None);
/// ```
pub fn syscall_number(name: &str) -> Option<i64> {
    native_number(name)
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

/// The compiled filter: BPF programs ready to install, in installation order.
///
/// Cheap to clone; the zygote compiles it once and every sandbox installs the same
/// programs.
///
/// ```
/// let compiled = hatchery::seccomp::SeccompPolicy::default_policy().unwrap().compile().unwrap();
/// assert!(compiled.programs().iter().all(|program| !program.is_empty()));
/// ```
#[derive(Debug, Clone)]
pub struct CompiledSeccomp {
    programs: Vec<BpfProgram>,
    fits_pooled_init: bool,
}

impl CompiledSeccomp {
    /// Whether a warm-pool sandbox's init may install this filter before it has a
    /// request, taking its cost off the spawn: true for hatchery's own policies
    /// (`default`, `strict`), which allow every call the init makes after it (receiving
    /// the request and its stdio, `dup3`, `chdir`, `setsid`, `setrlimit`, a pipe, the
    /// workload's `clone` without namespace flags, signal masks, a signalfd and its
    /// reads, `wait4`, `kill`, opening and reading `ns_last_pid`, `execve` in the
    /// workload); tests pin it. Another policy is installed by
    /// the workload last before `execve`, so that it need allow nothing of the setup.
    pub fn fits_pooled_init(&self) -> bool {
        self.fits_pooled_init
    }

    /// Installs the filters on the calling thread. Requires no_new_privs already set.
    /// Fails closed.
    ///
    /// The filters are inherited by every thread and process created afterwards. The
    /// sandbox sets no_new_privs as its own step so that a failure there is reported as
    /// that step; seccompiler sets it again, which is harmless. If a program after the
    /// first fails to install, the thread is left partly filtered and the error is
    /// returned: the caller must not exec.
    ///
    /// ```no_run
    /// let compiled = hatchery::seccomp::SeccompPolicy::default_policy().unwrap().compile().unwrap();
    /// nix::sys::prctl::set_no_new_privs().unwrap();
    /// compiled.apply().unwrap();
    /// assert_eq!(nix::unistd::chroot("/"), Err(nix::errno::Errno::EPERM));
    /// ```
    pub fn apply(&self) -> Result<(), SysError> {
        self.install()
            .map_err(|errno| SysError::new("seccomp(SECCOMP_SET_MODE_FILTER)", errno))
    }

    /// [`apply`](Self::apply), allocating nothing, not even for its error: fit for a
    /// child that shares its parent's memory until it execs. `EINVAL` stands for an
    /// error of seccompiler's own (not reachable: no program is empty, TSYNC is not
    /// asked for).
    pub fn install(&self) -> Result<(), Errno> {
        for program in &self.programs {
            seccompiler::apply_filter(program).map_err(|err| match err {
                seccompiler::Error::Prctl(io) | seccompiler::Error::Seccomp(io) => {
                    io.raw_os_error().map_or(Errno::EINVAL, Errno::from_raw)
                }
                _ => Errno::EINVAL,
            })?;
        }
        Ok(())
    }

    /// The BPF programs, in installation order.
    pub fn programs(&self) -> &[BpfProgram] {
        &self.programs
    }
}

// Classic BPF, from linux/bpf_common.h and linux/filter.h.
const BPF_LD: u16 = 0x00;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_W: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_JA: u16 = 0x00;
const BPF_JEQ: u16 = 0x10;
const BPF_JGE: u16 = 0x30;
const BPF_K: u16 = 0x00;

// Offsets in `struct seccomp_data { int nr; __u32 arch; __u64 ip; __u64 args[6]; }`.
const SECCOMP_DATA_NR: u32 = 0;
const SECCOMP_DATA_ARCH: u32 = 4;

// From linux/audit.h: EM_* | __AUDIT_ARCH_64BIT (0x80000000) | __AUDIT_ARCH_LE (0x40000000).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
const AUDIT_ARCH_AARCH64: u32 = 183 | 0x8000_0000 | 0x4000_0000;

/// `__X32_SYSCALL_BIT`: x86_64 syscall numbers at or above it use the x32 ABI.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

fn load(offset: u32) -> sock_filter {
    sock_filter {
        code: BPF_LD | BPF_W | BPF_ABS,
        jt: 0,
        jf: 0,
        k: offset,
    }
}

fn jump(op: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter {
        code: BPF_JMP | op | BPF_K,
        jt,
        jf,
        k,
    }
}

fn ret(k: u32) -> sock_filter {
    sock_filter {
        code: BPF_RET | BPF_K,
        jt: 0,
        jf: 0,
        k,
    }
}

/// An unconditional jump over `k` instructions (32 bits: as far as a program goes).
fn ja(k: u32) -> sock_filter {
    sock_filter {
        code: BPF_JMP | BPF_JA | BPF_K,
        jt: 0,
        jf: 0,
        k,
    }
}

/// A placeholder jump to the block of conditional rules `block`, which [`link`] aims.
fn to_block(block: usize) -> sock_filter {
    ja(TO_BLOCK - block as u32)
}

/// The ABI guard that heads the first program.
///
/// seccompiler's rules compare syscall numbers of the native ABI only, which a
/// default-allow filter cannot leave at that:
/// - a foreign architecture (on x86_64, the i386 ABI through `int 0x80`, which arrives
///   with `AUDIT_ARCH_I386`) numbers its syscalls differently, so the denylist would
///   miss them all. It gets `KILL_PROCESS`: seccompiler's own programs already return
///   that on an architecture mismatch, and the kernel applies the most severe verdict of
///   all installed filters, so anything milder here would be overridden anyway;
/// - on x86_64, numbers with the x32 bit reach the same kernel functions under other
///   numbers (`mount` is 165, x32 `mount` is 0x400000a5). They get `ERRNO(ENOSYS)`,
///   what a kernel built without x32 support answers. On aarch64 such numbers are
///   invalid anyway, and ENOSYS is what the kernel says to them too.
///
/// It uses only loads of `nr` and `arch`, JEQ, JGE and constant returns, which the
/// kernel's seccomp action cache can evaluate ahead of time: syscalls whose verdict is
/// "allow" whatever their arguments (most of them) stay cached and skip the filters.
fn abi_guard(audit_arch: u32) -> Vec<sock_filter> {
    vec![
        load(SECCOMP_DATA_ARCH),
        jump(BPF_JEQ, audit_arch, 1, 0),
        ret(libc::SECCOMP_RET_KILL_PROCESS),
        load(SECCOMP_DATA_NR),
        jump(BPF_JGE, X32_SYSCALL_BIT, 0, 1),
        ret(libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
    ]
}

/// What the tree does for a syscall number: return a verdict, or jump to the block that
/// checks the arguments against the conditional rules of one action (by its index in
/// the blocks given to [`link`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaf {
    Verdict(u32),
    Conditions(usize),
}

/// The leaf of every native syscall number as runs of equal leaves: `(first number,
/// leaf)`, sorted, starting at 0, each run lasting until the next one starts. `fixed`
/// holds the numbers a rule names; every other number (including those above the
/// highest known syscall: newer ones) gets `default`.
fn segments(fixed: &BTreeMap<u32, Leaf>, default: Leaf) -> Vec<(u32, Leaf)> {
    let mut runs: Vec<(u32, Leaf)> = vec![(0, default)];
    let mut push = |start: u32, verdict: Leaf| {
        let last = runs.last_mut().expect("runs starts with one run");
        if last.1 == verdict {
            return;
        }
        if last.0 == start {
            last.1 = verdict;
        } else {
            runs.push((start, verdict));
        }
    };
    for (&number, &verdict) in fixed {
        push(number, verdict);
        if fixed.get(&(number + 1)).is_none() {
            push(number + 1, default);
        }
    }
    // Merging a run into its predecessor at the same start may leave two equal
    // neighbours (a, X), (b, X) once a run between them vanished; fold them.
    runs.dedup_by(|later, earlier| later.1 == earlier.1);
    runs
}

/// A binary search over `runs` (from [`segments`]) for the syscall number in the
/// accumulator, in as few instructions as fit: [`shared_return_tree`] where its every
/// jump reaches, else [`verdict_tree`].
fn search_tree(runs: &[(u32, Leaf)]) -> Vec<sock_filter> {
    shared_return_tree(runs).unwrap_or_else(|| verdict_tree(runs))
}

/// The search of [`verdict_tree`] without a return per leaf: a comparison whose side is
/// a verdict jumps straight to that verdict's one return, placed after the tree. Half
/// the instructions (one `jge` per run, one return per distinct verdict), and the kernel
/// validates, converts and JIT-compiles every instruction at each installation. `None`
/// when the tree and its returns are longer than an 8-bit jump reaches (256
/// instructions).
fn shared_return_tree(runs: &[(u32, Leaf)]) -> Option<Vec<sock_filter>> {
    let mut verdicts: Vec<u32> = Vec::new();
    for &(_, leaf) in runs {
        if let Leaf::Verdict(value) = leaf {
            if !verdicts.contains(&value) {
                verdicts.push(value);
            }
        }
    }
    let conditions = runs
        .iter()
        .filter(|(_, leaf)| matches!(leaf, Leaf::Conditions(_)))
        .count();
    // One comparison per run but the first, a jump per conditional run, the returns.
    if runs.len() - 1 + conditions + verdicts.len() > 256 {
        return None;
    }
    let (mut program, fixups) = match shared_return_subtree(runs) {
        Subtree::Return(value) => return Some(vec![ret(value)]),
        Subtree::Code(code, fixups) => (code, fixups),
    };
    let returns = program.len();
    program.extend(verdicts.iter().map(|&value| ret(value)));
    for (at, on_true, value) in fixups {
        let index = verdicts.iter().position(|&v| v == value)?;
        let offset = u8::try_from(returns + index - at - 1).ok()?;
        if on_true {
            program[at].jt = offset;
        } else {
            program[at].jf = offset;
        }
    }
    Some(program)
}

/// A subtree of [`shared_return_tree`]: a verdict (no code: its parent jumps to the
/// verdict's return), or code with the jumps still to aim at returns (instruction,
/// whether its true side, verdict).
enum Subtree {
    Return(u32),
    Code(Vec<sock_filter>, Vec<(usize, bool, u32)>),
}

fn shared_return_subtree(runs: &[(u32, Leaf)]) -> Subtree {
    let [(_, leaf)] = runs else {
        let middle = runs.len() / 2;
        let below = shared_return_subtree(&runs[..middle]);
        let above = shared_return_subtree(&runs[middle..]);
        // nr >= pivot: the upper half, else the lower half (which follows).
        let mut code = vec![jump(BPF_JGE, runs[middle].0, 0, 0)];
        let mut fixups = Vec::new();
        let mut place = |half: Subtree, on_true: bool, code: &mut Vec<sock_filter>| {
            match half {
                Subtree::Return(value) => fixups.push((0, on_true, value)),
                Subtree::Code(half, half_fixups) => {
                    let start = code.len();
                    if on_true {
                        // Over the lower half's code, which fits 8 bits (checked above).
                        code[0].jt = (start - 1) as u8;
                    }
                    fixups.extend(half_fixups.into_iter().map(|(at, t, v)| (at + start, t, v)));
                    code.extend(half);
                }
            }
        };
        place(below, false, &mut code);
        place(above, true, &mut code);
        return Subtree::Code(code, fixups);
    };
    match *leaf {
        Leaf::Verdict(value) => Subtree::Return(value),
        Leaf::Conditions(block) => Subtree::Code(vec![to_block(block)], Vec::new()),
    }
}

/// A binary search over `runs` (from [`segments`]) for the syscall number in the
/// accumulator: one `jge` per level and a constant return per leaf, so a call costs
/// about log2(runs) comparisons and installing it costs little, whatever the number of
/// syscalls listed. Uses only instructions the kernel's seccomp action cache evaluates
/// ahead of time (`jge`, `ja`, constant returns). A [`Leaf::Conditions`] leaf is a
/// placeholder jump that [`link`] aims at its block.
fn verdict_tree(runs: &[(u32, Leaf)]) -> Vec<sock_filter> {
    let [(_, verdict)] = runs else {
        let middle = runs.len() / 2;
        let below = verdict_tree(&runs[..middle]);
        let above = verdict_tree(&runs[middle..]);
        let pivot = runs[middle].0;
        let mut program = Vec::with_capacity(below.len() + above.len() + 2);
        match u8::try_from(below.len()) {
            // nr >= pivot: jump over the lower half.
            Ok(skip) => program.push(jump(BPF_JGE, pivot, skip, 0)),
            // Too far for a conditional jump (8 bits): an unconditional one (32 bits).
            Err(_) => {
                program.push(jump(BPF_JGE, pivot, 0, 1));
                program.push(ja(below.len() as u32));
            }
        }
        program.extend(below);
        program.extend(above);
        return program;
    };
    match *verdict {
        Leaf::Verdict(value) => vec![ret(value)],
        Leaf::Conditions(block) => vec![to_block(block)],
    }
}

/// The `k` of a placeholder jump to block 0 (block `n`: `TO_BLOCK - n`); a real jump
/// within a program of at most [`BPF_MAX_INSTRUCTIONS`] never goes this far.
const TO_BLOCK: u32 = u32::MAX;

/// Appends `blocks` (seccompiler's programs for the conditional rules, one per action)
/// to `program` and aims each placeholder jump of its tree at its block. A block's
/// jumps are relative and stay within it, so it runs as it would as a program of its
/// own: it checks the architecture and the syscall number again, then the arguments,
/// and returns its action or `allow`.
fn link(mut program: Vec<sock_filter>, blocks: &[BpfProgram]) -> Vec<sock_filter> {
    let mut starts = Vec::with_capacity(blocks.len());
    for block in blocks {
        starts.push(program.len());
        program.extend_from_slice(block);
    }
    let tree_end = starts.first().copied().unwrap_or(program.len());
    for (at, insn) in program[..tree_end].iter_mut().enumerate() {
        if insn.code == BPF_JMP | BPF_JA | BPF_K && insn.k > TO_BLOCK - blocks.len() as u32 {
            let block = (TO_BLOCK - insn.k) as usize;
            insn.k = (starts[block] - at - 1) as u32;
        }
    }
    program
}

/// seccompiler's architecture and the audit value the kernel reports for it.
fn native_arch() -> Result<(TargetArch, u32), SeccompError> {
    #[cfg(target_arch = "x86_64")]
    return Ok((TargetArch::x86_64, AUDIT_ARCH_X86_64));
    #[cfg(target_arch = "aarch64")]
    return Ok((TargetArch::aarch64, AUDIT_ARCH_AARCH64));
    #[allow(unreachable_code)]
    Err(SeccompError::UnsupportedArchitecture(
        std::env::consts::ARCH,
    ))
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

/// The number of `name` on the running architecture.
fn native_number(name: &str) -> Option<i64> {
    NATIVE_SYSCALLS
        .iter()
        .find(|(sys_name, _)| sys_name.strip_prefix("SYS_") == Some(name))
        .map(|&(_, number)| number)
}

/// Whether `name` is a syscall of the running or of another supported architecture.
fn is_known_syscall(name: &str) -> bool {
    native_number(name).is_some()
        || FOREIGN_SYSCALLS
            .iter()
            .any(|sys_name| sys_name.strip_prefix("SYS_") == Some(name))
}

/// Builds the syscall tables from two lists of `libc::SYS_*` names: those both
/// x86_64 and aarch64 have, and those only x86_64 has (aarch64 has none of its own).
///
/// `NATIVE_SYSCALLS` pairs each name of the running architecture with its number;
/// `FOREIGN_SYSCALLS` lists the names known only on the other architecture, which a
/// policy may name but which are skipped when compiling here.
macro_rules! syscall_tables {
    (both: { $($both:ident)* } x86_64_only: { $($x86:ident)* }) => {
        #[cfg(target_arch = "x86_64")]
        const NATIVE_SYSCALLS: &[(&str, i64)] =
            &[$((stringify!($both), libc::$both as i64),)* $((stringify!($x86), libc::$x86 as i64),)*];
        #[cfg(target_arch = "x86_64")]
        const FOREIGN_SYSCALLS: &[&str] = &[];

        #[cfg(target_arch = "aarch64")]
        const NATIVE_SYSCALLS: &[(&str, i64)] = &[$((stringify!($both), libc::$both as i64),)*];
        #[cfg(target_arch = "aarch64")]
        const FOREIGN_SYSCALLS: &[&str] = &[$(stringify!($x86),)*];

        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        const NATIVE_SYSCALLS: &[(&str, i64)] = &[];
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        const FOREIGN_SYSCALLS: &[&str] = &[$(stringify!($both),)* $(stringify!($x86),)*];
    };
}

// The lists follow libc 0.2.191's syscall constants for x86_64 and aarch64 (libc does
// not yet list `fchmodat2` for aarch64, so there it counts as foreign).
syscall_tables! {
    both: {
        SYS_accept SYS_accept4 SYS_acct SYS_add_key SYS_adjtimex SYS_bind SYS_bpf SYS_brk
        SYS_capget SYS_capset SYS_chdir SYS_chroot SYS_clock_adjtime SYS_clock_getres
        SYS_clock_gettime SYS_clock_nanosleep SYS_clock_settime SYS_clone SYS_clone3 SYS_close
        SYS_close_range SYS_connect SYS_copy_file_range SYS_delete_module SYS_dup SYS_dup3
        SYS_epoll_create1 SYS_epoll_ctl SYS_epoll_pwait SYS_epoll_pwait2 SYS_eventfd2 SYS_execve
        SYS_execveat SYS_exit SYS_exit_group SYS_faccessat SYS_faccessat2 SYS_fadvise64
        SYS_fallocate SYS_fanotify_init SYS_fanotify_mark SYS_fchdir SYS_fchmod SYS_fchmodat
        SYS_fchown SYS_fchownat SYS_fcntl SYS_fdatasync SYS_fgetxattr SYS_finit_module
        SYS_flistxattr SYS_flock SYS_fremovexattr SYS_fsconfig SYS_fsetxattr SYS_fsmount
        SYS_fsopen SYS_fspick SYS_fstat SYS_fstatfs SYS_fsync SYS_ftruncate SYS_futex
        SYS_futex_waitv SYS_get_mempolicy SYS_get_robust_list SYS_getcpu SYS_getcwd
        SYS_getdents64 SYS_getegid SYS_geteuid SYS_getgid SYS_getgroups SYS_getitimer
        SYS_getpeername SYS_getpgid SYS_getpid SYS_getppid SYS_getpriority SYS_getrandom
        SYS_getresgid SYS_getresuid SYS_getrlimit SYS_getrusage SYS_getsid SYS_getsockname
        SYS_getsockopt SYS_gettid SYS_gettimeofday SYS_getuid SYS_getxattr SYS_init_module
        SYS_inotify_add_watch SYS_inotify_init1 SYS_inotify_rm_watch SYS_io_cancel
        SYS_io_destroy SYS_io_getevents SYS_io_setup SYS_io_submit SYS_io_uring_enter
        SYS_io_uring_register SYS_io_uring_setup SYS_ioctl SYS_ioprio_get SYS_ioprio_set
        SYS_kcmp SYS_kexec_file_load SYS_kexec_load SYS_keyctl SYS_kill SYS_landlock_add_rule
        SYS_landlock_create_ruleset SYS_landlock_restrict_self SYS_lgetxattr SYS_linkat
        SYS_listen SYS_listxattr SYS_llistxattr SYS_lookup_dcookie SYS_lremovexattr SYS_lseek
        SYS_lsetxattr SYS_madvise SYS_mbind SYS_membarrier SYS_memfd_create SYS_memfd_secret
        SYS_migrate_pages SYS_mincore SYS_mkdirat SYS_mknodat SYS_mlock SYS_mlock2 SYS_mlockall
        SYS_mmap SYS_mount SYS_mount_setattr SYS_move_mount SYS_move_pages SYS_mprotect
        SYS_mq_getsetattr SYS_mq_notify SYS_mq_open SYS_mq_timedreceive SYS_mq_timedsend
        SYS_mq_unlink SYS_mremap SYS_mseal SYS_msgctl SYS_msgget SYS_msgrcv SYS_msgsnd SYS_msync
        SYS_munlock SYS_munlockall SYS_munmap SYS_name_to_handle_at SYS_nanosleep SYS_newfstatat
        SYS_nfsservctl SYS_open_by_handle_at SYS_open_tree SYS_openat SYS_openat2
        SYS_perf_event_open SYS_personality SYS_pidfd_getfd SYS_pidfd_open SYS_pidfd_send_signal
        SYS_pipe2 SYS_pivot_root SYS_pkey_alloc SYS_pkey_free SYS_pkey_mprotect SYS_ppoll
        SYS_prctl SYS_pread64 SYS_preadv SYS_preadv2 SYS_prlimit64 SYS_process_madvise
        SYS_process_mrelease SYS_process_vm_readv SYS_process_vm_writev SYS_pselect6 SYS_ptrace
        SYS_pwrite64 SYS_pwritev SYS_pwritev2 SYS_quotactl SYS_quotactl_fd SYS_read
        SYS_readahead SYS_readlinkat SYS_readv SYS_reboot SYS_recvfrom SYS_recvmmsg SYS_recvmsg
        SYS_remap_file_pages SYS_removexattr SYS_renameat SYS_renameat2 SYS_request_key
        SYS_restart_syscall SYS_rseq SYS_rt_sigaction SYS_rt_sigpending SYS_rt_sigprocmask
        SYS_rt_sigqueueinfo SYS_rt_sigreturn SYS_rt_sigsuspend SYS_rt_sigtimedwait
        SYS_rt_tgsigqueueinfo SYS_sched_get_priority_max SYS_sched_get_priority_min
        SYS_sched_getaffinity SYS_sched_getattr SYS_sched_getparam SYS_sched_getscheduler
        SYS_sched_rr_get_interval SYS_sched_setaffinity SYS_sched_setattr SYS_sched_setparam
        SYS_sched_setscheduler SYS_sched_yield SYS_seccomp SYS_semctl SYS_semget SYS_semop
        SYS_semtimedop SYS_sendfile SYS_sendmmsg SYS_sendmsg SYS_sendto SYS_set_mempolicy
        SYS_set_mempolicy_home_node SYS_set_robust_list SYS_set_tid_address SYS_setdomainname
        SYS_setfsgid SYS_setfsuid SYS_setgid SYS_setgroups SYS_sethostname SYS_setitimer
        SYS_setns SYS_setpgid SYS_setpriority SYS_setregid SYS_setresgid SYS_setresuid
        SYS_setreuid SYS_setrlimit SYS_setsid SYS_setsockopt SYS_settimeofday SYS_setuid
        SYS_setxattr SYS_shmat SYS_shmctl SYS_shmdt SYS_shmget SYS_shutdown SYS_sigaltstack
        SYS_signalfd4 SYS_socket SYS_socketpair SYS_splice SYS_statfs SYS_statx SYS_swapoff
        SYS_swapon SYS_symlinkat SYS_sync SYS_sync_file_range SYS_syncfs SYS_sysinfo SYS_syslog
        SYS_tee SYS_tgkill SYS_timer_create SYS_timer_delete SYS_timer_getoverrun
        SYS_timer_gettime SYS_timer_settime SYS_timerfd_create SYS_timerfd_gettime
        SYS_timerfd_settime SYS_times SYS_tkill SYS_truncate SYS_umask SYS_umount2 SYS_uname
        SYS_unlinkat SYS_unshare SYS_userfaultfd SYS_utimensat SYS_vhangup SYS_vmsplice
        SYS_wait4 SYS_waitid SYS_write SYS_writev
    }
    x86_64_only: {
        SYS__sysctl SYS_access SYS_afs_syscall SYS_alarm SYS_arch_prctl SYS_chmod SYS_chown
        SYS_creat SYS_dup2 SYS_epoll_create SYS_epoll_ctl_old SYS_epoll_wait SYS_epoll_wait_old
        SYS_eventfd SYS_fchmodat2 SYS_fork SYS_futimesat SYS_get_thread_area SYS_getdents
        SYS_getpgrp SYS_getpmsg SYS_inotify_init SYS_ioperm SYS_iopl SYS_lchown SYS_link
        SYS_lstat SYS_mkdir SYS_mknod SYS_modify_ldt SYS_open SYS_pause SYS_pipe SYS_poll
        SYS_putpmsg SYS_readlink SYS_rename SYS_rmdir SYS_security SYS_select
        SYS_set_thread_area SYS_signalfd SYS_stat SYS_symlink SYS_sysfs SYS_time SYS_tuxcall
        SYS_unlink SYS_uselib SYS_ustat SYS_utime SYS_utimes SYS_vfork SYS_vserver
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs classic BPF the way the kernel runs a seccomp program, for the few
    /// instructions seccompiler and the guard emit.
    fn run(program: &[sock_filter], nr: i32, arch: u32, args: [u64; 6]) -> u32 {
        let mut data = Vec::with_capacity(64);
        data.extend_from_slice(&nr.to_ne_bytes());
        data.extend_from_slice(&arch.to_ne_bytes());
        data.extend_from_slice(&0u64.to_ne_bytes());
        for arg in args {
            data.extend_from_slice(&arg.to_ne_bytes());
        }
        let mut accumulator = 0u32;
        let mut pc = 0usize;
        loop {
            let insn = &program[pc];
            pc += 1;
            match insn.code {
                0x20 => {
                    let at = insn.k as usize;
                    accumulator = u32::from_ne_bytes(data[at..at + 4].try_into().unwrap());
                }
                0x54 => accumulator &= insn.k,
                0x05 => pc += insn.k as usize,
                0x15 | 0x25 | 0x35 => {
                    let taken = match insn.code {
                        0x15 => accumulator == insn.k,
                        0x25 => accumulator > insn.k,
                        _ => accumulator >= insn.k,
                    };
                    pc += usize::from(if taken { insn.jt } else { insn.jf });
                }
                0x06 => return insn.k,
                code => panic!("instruction {code:#x} not emulated"),
            }
        }
    }

    /// The verdict of a stack of programs: the kernel runs them all and keeps the most
    /// severe action (lowest as a signed number); on a tie, the newest filter's.
    fn verdict(compiled: &CompiledSeccomp, nr: i64, arch: u32, args: [u64; 6]) -> u32 {
        let nr = i32::try_from(nr).unwrap();
        let mut best: Option<u32> = None;
        for program in compiled.programs().iter().rev() {
            let result = run(program, nr, arch, args);
            let severity = |value: u32| (value & 0xffff_0000) as i32;
            if best.map_or(true, |best| severity(result) < severity(best)) {
                best = Some(result);
            }
        }
        best.unwrap()
    }

    fn default_compiled() -> CompiledSeccomp {
        SeccompPolicy::default_policy().unwrap().compile().unwrap()
    }

    fn one_rule(rule: &str) -> Result<SeccompPolicy, SeccompError> {
        SeccompPolicy::from_json(&format!(r#"{{"version": 1, "rules": [{rule}]}}"#))
    }

    const ALLOW: u32 = 0x7fff_0000;
    const EPERM: u32 = 0x0005_0000 | libc::EPERM as u32;
    const ENOSYS: u32 = 0x0005_0000 | libc::ENOSYS as u32;
    const KILL_PROCESS: u32 = 0x8000_0000;

    #[test]
    fn default_policy_parses_and_compiles() {
        let policy = SeccompPolicy::default_policy().unwrap();
        assert!(policy.rules.len() >= 10);
        let compiled = policy.compile().unwrap();
        // The tree and the conditional rules' blocks (EPERM, ENOSYS and EAFNOSUPPORT)
        // in one program.
        assert_eq!(compiled.programs().len(), 1);
        for program in compiled.programs() {
            assert!(program.len() > abi_guard(AUDIT_ARCH_X86_64).len());
            assert!(program.len() <= BPF_MAX_INSTRUCTIONS);
            assert_eq!(
                program.last(),
                Some(&ret(ALLOW)),
                "a denylist ends in allow"
            );
        }
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
    fn bpf_constants_match_the_kernel_headers() {
        assert_eq!(BPF_LD | BPF_W | BPF_ABS, 0x20);
        assert_eq!(BPF_JMP | BPF_JEQ | BPF_K, 0x15);
        assert_eq!(BPF_JMP | BPF_JGE | BPF_K, 0x35);
        assert_eq!(BPF_RET | BPF_K, 0x06);
        assert_eq!(libc::SECCOMP_RET_ERRNO, 0x0005_0000);
        assert_eq!(libc::SECCOMP_RET_KILL_PROCESS, 0x8000_0000);
        assert_eq!(libc::SECCOMP_RET_ALLOW, 0x7fff_0000);
        assert_eq!(AUDIT_ARCH_X86_64, 0xC000_003E);
        assert_eq!(AUDIT_ARCH_AARCH64, 0xC000_00B7);
    }

    #[test]
    fn abi_guard_heads_the_first_program() {
        let guard = abi_guard(0xC000_003E);
        let insn = |code, jt, jf, k| sock_filter { code, jt, jf, k };
        assert_eq!(
            guard,
            vec![
                insn(0x20, 0, 0, 4),                // A = seccomp_data.arch
                insn(0x15, 1, 0, 0xC000_003E),      // native: skip the kill
                insn(0x06, 0, 0, 0x8000_0000),      // foreign ABI: KILL_PROCESS
                insn(0x20, 0, 0, 0),                // A = seccomp_data.nr
                insn(0x35, 0, 1, 0x4000_0000),      // x32 bit (or a negative nr)?
                insn(0x06, 0, 0, 0x0005_0000 | 38), // ... ERRNO(ENOSYS)
            ]
        );
        let compiled = default_compiled();
        let (_, audit_arch) = native_arch().unwrap();
        let guard = abi_guard(audit_arch);
        assert_eq!(compiled.programs()[0][..guard.len()], guard[..]);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_compiled_default_gives_the_expected_verdicts() {
        const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
        let compiled = default_compiled();
        let x86 = |nr: i64, args: [u64; 6]| verdict(&compiled, nr, AUDIT_ARCH_X86_64, args);
        let none = [0; 6];

        assert_eq!(x86(libc::SYS_read, none), ALLOW);
        assert_eq!(x86(libc::SYS_close_range, none), ALLOW);
        assert_eq!(x86(libc::SYS_faccessat2, none), ALLOW);
        assert_eq!(x86(libc::SYS_mount, none), EPERM);
        assert_eq!(x86(libc::SYS_umount2, none), EPERM);
        assert_eq!(x86(libc::SYS_chroot, none), EPERM);
        assert_eq!(x86(libc::SYS_ptrace, none), EPERM);
        assert_eq!(x86(libc::SYS_io_uring_setup, none), EPERM);
        assert_eq!(x86(libc::SYS_clone3, none), ENOSYS);

        // clone: threads and forks pass, any namespace flag does not.
        let thread = 0x003d_0f00;
        let fork = 0x0120_0011; // CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD
        assert_eq!(x86(libc::SYS_clone, [thread, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(x86(libc::SYS_clone, [fork, 0, 0, 0, 0, 0]), ALLOW);
        for flag in [
            0x20000,
            0x0200_0000,
            0x0400_0000,
            0x0800_0000,
            0x1000_0000,
            0x2000_0000,
            0x4000_0000,
            0x80,
        ] {
            assert_eq!(
                x86(libc::SYS_clone, [fork | flag, 0, 0, 0, 0, 0]),
                EPERM,
                "{flag:#x}"
            );
        }

        // ioctl: TIOCSTI and TIOCLINUX, also with junk in the upper half the kernel drops.
        assert_eq!(x86(libc::SYS_ioctl, [0, 0x5412, 0, 0, 0, 0]), EPERM);
        assert_eq!(
            x86(libc::SYS_ioctl, [0, 0xffff_ffff_0000_5412, 0, 0, 0, 0]),
            EPERM
        );
        assert_eq!(x86(libc::SYS_ioctl, [0, 0x541C, 0, 0, 0, 0]), EPERM);
        assert_eq!(x86(libc::SYS_ioctl, [0, 0x5401, 0, 0, 0, 0]), ALLOW); // TCGETS

        // personality: the default persona and the query pass, ADDR_NO_RANDOMIZE does not.
        for allowed in [0, 0x8, 0x20000, 0x20008, 0xffff_ffff] {
            assert_eq!(
                x86(libc::SYS_personality, [allowed, 0, 0, 0, 0, 0]),
                ALLOW,
                "{allowed:#x}"
            );
        }
        assert_eq!(
            x86(libc::SYS_personality, [0x0040000, 0, 0, 0, 0, 0]),
            EPERM
        );
        assert_eq!(
            x86(libc::SYS_personality, [0x0400000, 0, 0, 0, 0, 0]),
            EPERM
        );

        // Foreign ABIs: x32 numbers and the i386 ABI.
        assert_eq!(x86(libc::SYS_mount | 0x4000_0000, none), ENOSYS);
        assert_eq!(x86(libc::SYS_read | 0x4000_0000, none), ENOSYS);
        assert_eq!(x86(-1, none), ENOSYS);
        assert_eq!(verdict(&compiled, 3, AUDIT_ARCH_I386, none), KILL_PROCESS);
    }

    #[test]
    fn kill_process_rules_and_empty_policies_compile() {
        let policy = one_rule(r#"{"syscalls": ["ptrace"], "action": "kill_process"}"#).unwrap();
        assert!(policy.blocked_syscalls().is_empty());
        let compiled = policy.compile().unwrap();
        assert_eq!(compiled.programs().len(), 1);
        let (_, audit_arch) = native_arch().unwrap();
        assert_eq!(
            verdict(&compiled, libc::SYS_ptrace, audit_arch, [0; 6]),
            KILL_PROCESS
        );
        assert_eq!(
            verdict(&compiled, libc::SYS_read, audit_arch, [0; 6]),
            ALLOW
        );

        // No rules at all still guards the ABI.
        let empty = SeccompPolicy::from_json(r#"{"version": 1, "rules": []}"#)
            .unwrap()
            .compile()
            .unwrap();
        assert_eq!(empty.programs().len(), 1);
        assert_eq!(empty.programs()[0].len(), abi_guard(audit_arch).len() + 1);
        assert_eq!(verdict(&empty, libc::SYS_read, audit_arch, [0; 6]), ALLOW);
        assert_eq!(
            verdict(&empty, libc::SYS_read | 0x4000_0000, audit_arch, [0; 6]),
            ENOSYS
        );
    }

    #[test]
    fn if_all_needs_every_condition() {
        let policy = one_rule(
            r#"{"syscalls": ["socket"], "action": {"errno": "EAFNOSUPPORT"}, "if_all": [
                {"arg": 0, "width": 32, "op": "ne", "value": 1},
                {"arg": 0, "width": 32, "op": "ne", "value": 2}]}"#,
        )
        .unwrap();
        let compiled = policy.compile().unwrap();
        let (_, audit_arch) = native_arch().unwrap();
        let socket = |family| {
            verdict(
                &compiled,
                libc::SYS_socket,
                audit_arch,
                [family, 0, 0, 0, 0, 0],
            )
        };
        assert_eq!(socket(1), ALLOW);
        assert_eq!(socket(2), ALLOW);
        assert_eq!(socket(10), 0x0005_0000 | libc::EAFNOSUPPORT as u32);
    }

    /// Set in the environment of the re-executed test binary: `filtered` applies the
    /// default policy before probing, `control` probes without it.
    const PROBE_ENV: &str = "HATCHERY_SECCOMP_PROBE";

    const PROBE_PATH: &str = "/nonexistent-hatchery-seccomp-probe";

    /// The probe: runs in a fresh process (this test binary, re-executed), applies the
    /// policy unless it is the control run, tries blocked and allowed operations, prints
    /// one line per check and exits 0 only if all of them came out as expected.
    fn probe(filtered: bool) -> ! {
        use nix::sched::CloneFlags;
        use std::io::Write;
        use std::time::Instant;

        let mut failures = 0;
        let mut check = |what: &str, got: nix::Result<()>, want: nix::Result<()>| {
            let verdict = if got == want { "ok" } else { "FAIL" };
            if got != want {
                failures += 1;
            }
            println!("{verdict} {what}: got {got:?}, want {want:?}");
        };
        let blocked = |unfiltered: Errno| Err(if filtered { Errno::EPERM } else { unfiltered });
        // The harness has printed "test ... " without a newline.
        println!();

        if filtered {
            let started = Instant::now();
            let compiled = default_compiled();
            let compiled_in = started.elapsed();
            check(
                "set_no_new_privs",
                nix::sys::prctl::set_no_new_privs(),
                Ok(()),
            );
            let started = Instant::now();
            let applied = compiled.apply().map_err(|err| err.errno());
            let applied_in = started.elapsed();
            check("apply", applied, Ok(()));
            println!("timing: compile {compiled_in:?}, apply {applied_in:?}");
        }
        check(
            "umount",
            nix::mount::umount(PROBE_PATH),
            blocked(Errno::ENOENT),
        );
        check(
            "chroot",
            nix::unistd::chroot(PROBE_PATH),
            blocked(Errno::ENOENT),
        );
        let unshare = nix::sched::unshare(CloneFlags::empty());
        check(
            "unshare(0)",
            unshare,
            if filtered { Err(Errno::EPERM) } else { Ok(()) },
        );
        if filtered {
            // Unfiltered this would fork; the child leaves at once.
            let clone3 = crate::sys::clone3_and_exit(0).map_err(|err| err.errno());
            check("clone3", clone3, Err(Errno::ENOSYS));
        }
        let thread = std::thread::spawn(|| 42).join();
        check(
            "thread",
            if thread.ok() == Some(42) {
                Ok(())
            } else {
                Err(Errno::EIO)
            },
            Ok(()),
        );
        let child = std::process::Command::new("/bin/true").status();
        let child = match child {
            Ok(status) if status.success() => Ok(()),
            Ok(_) => Err(Errno::ECHILD),
            Err(err) => Err(Errno::from_raw(err.raw_os_error().unwrap_or(libc::EIO))),
        };
        check("spawn /bin/true", child, Ok(()));

        println!(
            "probe verdict: {}",
            if failures == 0 { "pass" } else { "fail" }
        );
        let _ = std::io::stdout().flush();
        std::process::exit(if failures == 0 { 0 } else { 1 })
    }

    #[test]
    fn default_policy_holds_in_a_child() {
        match std::env::var(PROBE_ENV).as_deref() {
            Ok("filtered") => probe(true),
            Ok("control") => probe(false),
            _ => {}
        }
        let module = module_path!();
        let module = module.split_once("::").map_or(module, |(_, rest)| rest);
        let test_name = format!("{module}::default_policy_holds_in_a_child");
        let exe = std::env::current_exe().unwrap();
        // The control run proves the probe can tell: without the filter the same calls
        // give other answers.
        for mode in ["control", "filtered"] {
            let output = std::process::Command::new(&exe)
                .args(["--exact", &test_name, "--nocapture", "--test-threads=1"])
                .env(PROBE_ENV, mode)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            let stderr = String::from_utf8_lossy(&output.stderr);
            println!("{mode} probe:\n{stdout}");
            assert!(
                output.status.success() && stdout.contains("probe verdict: pass"),
                "{mode} probe failed ({}):\n{stdout}\n{stderr}",
                output.status
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

    /// The binary search must give every number exactly the verdict of its run, also
    /// when a subtree is too long for an 8-bit jump and an unconditional one bridges it.
    #[test]
    fn the_verdict_tree_agrees_with_its_table() {
        let (_, audit_arch) = native_arch().unwrap();
        let tables: Vec<(BTreeMap<u32, u32>, u32)> = vec![
            (BTreeMap::new(), ALLOW),
            (BTreeMap::from([(0, EPERM)]), ALLOW),
            (BTreeMap::from([(0, EPERM), (1, EPERM), (7, ENOSYS)]), ALLOW),
            (BTreeMap::from([(3, ALLOW), (4, ALLOW), (5, EPERM)]), ENOSYS),
            // Alternating verdicts: 1200 runs, a tree far deeper than 8-bit jumps reach.
            ((0..600).map(|n| (n * 2, EPERM)).collect(), ALLOW),
            // Numbers named with the default's own verdict change nothing.
            ((0..40).map(|n| (n, ALLOW)).collect(), ALLOW),
        ];
        for (fixed, default) in tables {
            let leaves = fixed.iter().map(|(&n, &v)| (n, Leaf::Verdict(v))).collect();
            let runs = segments(&leaves, Leaf::Verdict(default));
            assert_eq!(runs[0].0, 0);
            assert!(runs.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 != w[1].1));
            // Both layouts; the shared returns' only where its jumps reach.
            let shared = shared_return_tree(&runs);
            assert_eq!(shared.is_some(), runs.len() < 200, "{} runs", runs.len());
            for tree in [verdict_tree(&runs), search_tree(&runs)] {
                let mut program = abi_guard(audit_arch);
                program.extend(tree);
                assert!(program.len() <= BPF_MAX_INSTRUCTIONS, "{}", program.len());
                for nr in 0..1400 {
                    let expected = fixed.get(&(nr as u32)).copied().unwrap_or(default);
                    assert_eq!(run(&program, nr, audit_arch, [0; 6]), expected, "nr {nr}");
                }
                assert_eq!(
                    run(&program, 0x3fff_ffff, audit_arch, [0; 6]),
                    default,
                    "far above every named number"
                );
            }
            if let Some(shared) = shared {
                let returns = shared.iter().filter(|insn| insn.code == BPF_RET | BPF_K);
                let distinct: std::collections::BTreeSet<u32> = runs
                    .iter()
                    .map(|(_, leaf)| match leaf {
                        Leaf::Verdict(v) => *v,
                        Leaf::Conditions(_) => unreachable!(),
                    })
                    .collect();
                assert_eq!(returns.count(), distinct.len(), "one return per verdict");
                assert!(
                    shared.len() <= runs.len() + distinct.len(),
                    "{}",
                    shared.len()
                );
            }
        }
        let long = segments(
            &(0..600).map(|n| (n * 2, Leaf::Verdict(EPERM))).collect(),
            Leaf::Verdict(ALLOW),
        );
        assert!(verdict_tree(&long)
            .iter()
            .any(|insn| insn.code == BPF_JMP | BPF_JA | BPF_K));
    }

    /// The linked program's every jump lands inside it (the kernel would refuse it
    /// otherwise, but only at install time): placeholders are all resolved, each to the
    /// first instruction of a block, seccompiler's arch check.
    #[test]
    fn every_jump_of_the_linked_programs_lands_inside_them() {
        for policy in [
            SeccompPolicy::default_policy().unwrap(),
            SeccompPolicy::strict_policy().unwrap(),
        ] {
            let compiled = policy.compile().unwrap();
            let program = &compiled.programs()[0];
            let mut block_starts = 0;
            for (at, insn) in program.iter().enumerate() {
                let next = at + 1;
                let targets = match insn.code {
                    0x05 => vec![next + insn.k as usize],
                    code if code & 0x07 == BPF_JMP => {
                        vec![next + usize::from(insn.jt), next + usize::from(insn.jf)]
                    }
                    _ => continue,
                };
                for target in targets {
                    assert!(target < program.len(), "jump at {at} to {target}");
                }
                if insn.code == 0x05 && program[next + insn.k as usize] == load(SECCOMP_DATA_ARCH) {
                    block_starts += 1;
                }
            }
            assert!(
                block_starts >= 2,
                "the conditional syscalls' leaves reach blocks"
            );
        }
    }

    #[test]
    fn strict_policy_parses_compiles_and_is_small() {
        let policy = SeccompPolicy::strict_policy().unwrap();
        assert_eq!(policy.default, Action::Errno(Errno::ENOSYS));
        let compiled = policy.compile().unwrap();
        // The tree, then the conditional rules' blocks: EPERM (clone, ioctl,
        // personality) and EAFNOSUPPORT (socket).
        assert_eq!(compiled.programs().len(), 1);
        // A binary search, not a list: well under one instruction per allowed syscall.
        // The tree ends where the first block begins, with seccompiler's arch check.
        let allowed = policy.allowed_syscalls().len();
        assert!(allowed > 250, "{allowed}");
        let program = &compiled.programs()[0];
        let guard = abi_guard(AUDIT_ARCH_X86_64).len();
        let tree = program[guard..]
            .iter()
            .position(|insn| *insn == load(SECCOMP_DATA_ARCH))
            .expect("the blocks follow the tree");
        assert!(
            tree < allowed,
            "{tree} instructions for {allowed} allowed syscalls"
        );
        assert!(program.len() < allowed + 100, "{}", program.len());
    }

    /// Every syscall of the architecture gets from the compiled filter exactly what the
    /// policy's own lists say, for both built-in policies.
    #[test]
    fn compiled_builtins_match_their_lists() {
        let (_, audit_arch) = native_arch().unwrap();
        for policy in [
            SeccompPolicy::default_policy().unwrap(),
            SeccompPolicy::strict_policy().unwrap(),
        ] {
            let compiled = policy.compile().unwrap();
            let blocked = policy.blocked_syscalls();
            let allowed = policy.allowed_syscalls();
            let mut checked = 0;
            for &(sys_name, number) in NATIVE_SYSCALLS {
                let name = &sys_name["SYS_".len()..];
                let got = verdict(&compiled, number, audit_arch, [0; 6]);
                if let Some(&(_, errno)) = blocked.iter().find(|(n, _)| n == name) {
                    assert_eq!(got, 0x0005_0000 | errno as u32, "{name}");
                    checked += 1;
                } else if allowed.iter().any(|n| n == name) {
                    assert_eq!(got, ALLOW, "{name}");
                    checked += 1;
                }
            }
            // Only the conditional rules' syscalls are in neither list.
            assert!(checked + 4 >= NATIVE_SYSCALLS.len(), "{checked}");
            // A number above every known syscall: the default action.
            let expected = policy.default.ret_value();
            assert_eq!(verdict(&compiled, 1000, audit_arch, [0; 6]), expected);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_compiled_strict_policy_gives_the_expected_verdicts() {
        const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
        let compiled = SeccompPolicy::strict_policy().unwrap().compile().unwrap();
        let x86 = |nr: i64, args: [u64; 6]| verdict(&compiled, nr, AUDIT_ARCH_X86_64, args);
        let none = [0; 6];
        assert_eq!(x86(libc::SYS_read, none), ALLOW);
        assert_eq!(x86(libc::SYS_execve, none), ALLOW);
        assert_eq!(x86(libc::SYS_mount, none), EPERM);
        assert_eq!(x86(libc::SYS_clone3, none), ENOSYS);
        assert_eq!(x86(libc::SYS_kcmp, none), ENOSYS, "not listed");
        assert_eq!(x86(libc::SYS_sethostname, none), ENOSYS, "not listed");
        assert_eq!(x86(470, none), ENOSYS, "a syscall newer than the policy");
        let fork = 0x0120_0011;
        assert_eq!(x86(libc::SYS_clone, [fork, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(
            x86(libc::SYS_clone, [fork | 0x1000_0000, 0, 0, 0, 0, 0]),
            EPERM
        );
        assert_eq!(x86(libc::SYS_ioctl, [0, 0x5401, 0, 0, 0, 0]), ALLOW);
        assert_eq!(x86(libc::SYS_ioctl, [0, 0x5412, 0, 0, 0, 0]), EPERM);
        assert_eq!(x86(libc::SYS_socket, [1, 1, 0, 0, 0, 0]), ALLOW);
        assert_eq!(
            x86(libc::SYS_socket, [40, 1, 0, 0, 0, 0]),
            0x0005_0000 | libc::EAFNOSUPPORT as u32
        );
        assert_eq!(x86(libc::SYS_read | 0x4000_0000, none), ENOSYS);
        assert_eq!(verdict(&compiled, 3, AUDIT_ARCH_I386, none), KILL_PROCESS);
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
