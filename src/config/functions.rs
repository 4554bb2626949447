//! The function library of the job language: a subset of Terraform's built-ins.
//!
//! concat, merge, lookup, length, keys, values, format, join, split, upper, lower, min,
//! max, ceil, floor, file, jsonencode, jsondecode, tostring, tonumber, coalesce, contains,
//! range. [`declare_all`] registers them in an `hcl::eval::Context`. `file()` reads a file
//! relative to the directory of the module being evaluated (set with [`BaseDirGuard`]);
//! that is the only I/O here.

use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::{Map, Number, Value};
use std::cell::RefCell;
use std::path::PathBuf;

thread_local! {
    static BASE_DIR: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

/// Sets the directory `file()` resolves against while it lives.
pub struct BaseDirGuard(Option<PathBuf>);

impl BaseDirGuard {
    pub fn set(dir: PathBuf) -> Self {
        BaseDirGuard(BASE_DIR.with(|b| b.borrow_mut().replace(dir)))
    }
}

impl Drop for BaseDirGuard {
    fn drop(&mut self) {
        let prev = self.0.take();
        BASE_DIR.with(|b| *b.borrow_mut() = prev);
    }
}

/// The names of every function, for "did you mean".
pub const NAMES: &[&str] = &[
    "concat",
    "merge",
    "lookup",
    "length",
    "keys",
    "values",
    "format",
    "join",
    "split",
    "upper",
    "lower",
    "min",
    "max",
    "ceil",
    "floor",
    "file",
    "jsonencode",
    "jsondecode",
    "tostring",
    "tonumber",
    "coalesce",
    "contains",
    "range",
];

/// Registers every function of the language in `ctx`.
pub fn declare_all(ctx: &mut Context) {
    use ParamType as P;
    let any_arr = || P::array_of(P::Any);
    let any_obj = || P::object_of(P::Any);
    ctx.declare_func("concat", FuncDef::builder().variadic_param(any_arr()).build(concat));
    ctx.declare_func("merge", FuncDef::builder().variadic_param(P::Nullable(Box::new(any_obj()))).build(merge));
    ctx.declare_func(
        "lookup",
        FuncDef::builder().param(any_obj()).param(P::String).variadic_param(P::Any).build(lookup),
    );
    ctx.declare_func("length", FuncDef::builder().param(P::Any).build(length));
    ctx.declare_func("keys", FuncDef::builder().param(any_obj()).build(keys));
    ctx.declare_func("values", FuncDef::builder().param(any_obj()).build(values));
    ctx.declare_func("format", FuncDef::builder().param(P::String).variadic_param(P::Any).build(format));
    ctx.declare_func("join", FuncDef::builder().param(P::String).param(P::array_of(P::Any)).build(join));
    ctx.declare_func("split", FuncDef::builder().param(P::String).param(P::String).build(split));
    ctx.declare_func("upper", FuncDef::builder().param(P::String).build(upper));
    ctx.declare_func("lower", FuncDef::builder().param(P::String).build(lower));
    ctx.declare_func("min", FuncDef::builder().variadic_param(P::Number).build(min));
    ctx.declare_func("max", FuncDef::builder().variadic_param(P::Number).build(max));
    ctx.declare_func("ceil", FuncDef::builder().param(P::Number).build(ceil));
    ctx.declare_func("floor", FuncDef::builder().param(P::Number).build(floor));
    ctx.declare_func("file", FuncDef::builder().param(P::String).build(file));
    ctx.declare_func("jsonencode", FuncDef::builder().param(P::Any).build(jsonencode));
    ctx.declare_func("jsondecode", FuncDef::builder().param(P::String).build(jsondecode));
    ctx.declare_func("tostring", FuncDef::builder().param(P::Any).build(tostring));
    ctx.declare_func("tonumber", FuncDef::builder().param(P::Any).build(tonumber));
    ctx.declare_func("coalesce", FuncDef::builder().variadic_param(P::Any).build(coalesce));
    ctx.declare_func("contains", FuncDef::builder().param(P::array_of(P::Any)).param(P::Any).build(contains));
    ctx.declare_func("range", FuncDef::builder().variadic_param(P::Number).build(range));
}

fn num(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Value::Number(Number::from(f as i64))
    } else {
        Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn concat(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::Array(args.iter().flat_map(|a| a.as_array().cloned().unwrap_or_default()).collect()))
}

fn merge(args: FuncArgs) -> Result<Value, String> {
    let mut out = Map::new();
    for a in args.iter() {
        if let Some(o) = a.as_object() {
            for (k, v) in o {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(Value::Object(out))
}

fn lookup(args: FuncArgs) -> Result<Value, String> {
    let obj = args[0].as_object().expect("checked");
    let key = args[1].as_str().expect("checked");
    match (obj.get(key), args.get(2)) {
        (Some(v), _) => Ok(v.clone()),
        (None, Some(d)) => Ok(d.clone()),
        (None, None) => Err(format!("the given key `{key}` does not exist in the map and no default was given")),
    }
}

fn length(args: FuncArgs) -> Result<Value, String> {
    match &args[0] {
        Value::Array(a) => Ok(num(a.len() as f64)),
        Value::Object(o) => Ok(num(o.len() as f64)),
        Value::String(s) => Ok(num(s.chars().count() as f64)),
        other => Err(format!("length() takes a list, map or string, got `{other}`")),
    }
}

fn keys(args: FuncArgs) -> Result<Value, String> {
    let mut k: Vec<_> = args[0].as_object().expect("checked").keys().cloned().collect();
    k.sort();
    Ok(Value::Array(k.into_iter().map(Value::String).collect()))
}

fn values(args: FuncArgs) -> Result<Value, String> {
    let o = args[0].as_object().expect("checked");
    let mut k: Vec<_> = o.keys().collect();
    k.sort();
    Ok(Value::Array(k.into_iter().map(|k| o[k].clone()).collect()))
}

fn display(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok("null".into()),
        other => Err(format!("cannot convert `{other}` to a string")),
    }
}

fn format(args: FuncArgs) -> Result<Value, String> {
    let spec = args[0].as_str().expect("checked");
    let mut rest = args.iter().skip(1);
    let mut out = String::new();
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut flags = String::new();
        while let Some(&d) = chars.peek() {
            if d.is_ascii_digit() || d == '.' || d == '-' || d == '+' {
                flags.push(d);
                chars.next();
            } else {
                break;
            }
        }
        let verb = chars.next().ok_or("format string ends with a lone `%`")?;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let arg = rest.next().ok_or_else(|| format!("not enough arguments for format verb `%{verb}`"))?;
        let precision = flags.split_once('.').and_then(|(_, p)| p.parse::<usize>().ok());
        let width = flags.split('.').next().and_then(|w| w.trim_start_matches(['-', '+']).parse::<usize>().ok());
        let s = match verb {
            's' | 'v' => display(arg).or_else(|_| serde_json::to_string(arg).map_err(|e| e.to_string()))?,
            'd' => format!("{}", arg.as_f64().ok_or_else(|| format!("%d needs a number, got `{arg}`"))?.trunc() as i64),
            'f' => format!(
                "{:.*}",
                precision.unwrap_or(6),
                arg.as_f64().ok_or_else(|| format!("%f needs a number, got `{arg}`"))?
            ),
            'q' => serde_json::to_string(&display(arg)?).map_err(|e| e.to_string())?,
            't' => arg.as_bool().ok_or_else(|| format!("%t needs a bool, got `{arg}`"))?.to_string(),
            other => return Err(format!("unsupported format verb `%{other}`")),
        };
        match width {
            Some(w) if flags.starts_with('-') => out.push_str(&format!("{s:<w$}")),
            Some(w) => out.push_str(&format!("{s:>w$}")),
            None => out.push_str(&s),
        }
    }
    Ok(Value::String(out))
}

fn join(args: FuncArgs) -> Result<Value, String> {
    let sep = args[0].as_str().expect("checked");
    let parts: Result<Vec<String>, String> = args[1].as_array().expect("checked").iter().map(display).collect();
    Ok(Value::String(parts?.join(sep)))
}

fn split(args: FuncArgs) -> Result<Value, String> {
    let sep = args[0].as_str().expect("checked");
    let s = args[1].as_str().expect("checked");
    Ok(Value::Array(s.split(sep).map(|p| Value::String(p.to_string())).collect()))
}

fn upper(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::String(args[0].as_str().expect("checked").to_uppercase()))
}

fn lower(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::String(args[0].as_str().expect("checked").to_lowercase()))
}

fn min(args: FuncArgs) -> Result<Value, String> {
    args.iter().map(f).reduce(f64::min).map(num).ok_or_else(|| "min() needs at least one number".into())
}

fn max(args: FuncArgs) -> Result<Value, String> {
    args.iter().map(f).reduce(f64::max).map(num).ok_or_else(|| "max() needs at least one number".into())
}

fn ceil(args: FuncArgs) -> Result<Value, String> {
    Ok(num(f(&args[0]).ceil()))
}

fn floor(args: FuncArgs) -> Result<Value, String> {
    Ok(num(f(&args[0]).floor()))
}

/// The largest file `file()` reads (a job's scripts and small data, not datasets).
pub const FILE_LIMIT: u64 = 4 * 1024 * 1024;

/// `file(path)`: a regular file's text, at most [`FILE_LIMIT`] bytes (`/dev/zero`, a FIFO
/// or a huge file is an error, not a hang).
fn file(args: FuncArgs) -> Result<Value, String> {
    use std::io::Read;
    let rel = args[0].as_str().expect("checked");
    let base = BASE_DIR.with(|b| b.borrow().clone()).unwrap_or_default();
    let path = base.join(rel);
    let err = |e: &dyn std::fmt::Display| format!("cannot read `{}`: {e}", path.display());
    let meta = std::fs::metadata(&path).map_err(|e| err(&e))?;
    if !meta.is_file() {
        return Err(err(&"not a regular file"));
    }
    if meta.len() > FILE_LIMIT {
        return Err(err(&format!("it has {} bytes; file() reads at most {FILE_LIMIT}", meta.len())));
    }
    let mut text = String::new();
    std::fs::File::open(&path)
        .map_err(|e| err(&e))?
        .take(FILE_LIMIT + 1)
        .read_to_string(&mut text)
        .map_err(|e| err(&e))?;
    if text.len() as u64 > FILE_LIMIT {
        return Err(err(&format!("it grew past {FILE_LIMIT} bytes while read")));
    }
    Ok(Value::String(text))
}

fn jsonencode(args: FuncArgs) -> Result<Value, String> {
    serde_json::to_string(&args[0]).map(Value::String).map_err(|e| e.to_string())
}

fn jsondecode(args: FuncArgs) -> Result<Value, String> {
    let v: serde_json::Value =
        serde_json::from_str(args[0].as_str().expect("checked")).map_err(|e| format!("invalid JSON: {e}"))?;
    hcl::to_value(v).map_err(|e| e.to_string())
}

fn tostring(args: FuncArgs) -> Result<Value, String> {
    display(&args[0]).map(Value::String)
}

fn tonumber(args: FuncArgs) -> Result<Value, String> {
    match &args[0] {
        Value::Number(_) => Ok(args[0].clone()),
        Value::String(s) => s.trim().parse::<f64>().map(num).map_err(|_| format!("cannot convert \"{s}\" to a number")),
        Value::Null => Ok(Value::Null),
        other => Err(format!("cannot convert `{other}` to a number")),
    }
}

fn coalesce(args: FuncArgs) -> Result<Value, String> {
    args.iter()
        .find(|v| !v.is_null() && v.as_str() != Some(""))
        .cloned()
        .ok_or_else(|| "no non-null, non-empty argument".into())
}

fn contains(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::Bool(args[0].as_array().expect("checked").contains(&args[1])))
}

fn range(args: FuncArgs) -> Result<Value, String> {
    let a: Vec<f64> = args.iter().map(f).collect();
    let (start, end, step) = match a.as_slice() {
        [e] => (0.0, *e, 1.0),
        [s, e] => (*s, *e, if e >= s { 1.0 } else { -1.0 }),
        [s, e, st] => (*s, *e, *st),
        _ => return Err("range() takes 1 to 3 numbers".into()),
    };
    if step == 0.0 || (end - start) / step > 1_000_000.0 {
        return Err("range() step must be non-zero and the range at most 1,000,000 long".into());
    }
    let mut out = Vec::new();
    let mut x = start;
    while (step > 0.0 && x < end) || (step < 0.0 && x > end) {
        out.push(num(x));
        x += step;
    }
    Ok(Value::Array(out))
}

/// Why [`evaluate`] failed.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Hcl(#[from] hcl::eval::Error),
    /// A division by zero or an overflow: the value is not a finite number.
    #[error("the arithmetic does not give a finite number (a division by zero, or a number too large)")]
    NotFinite,
}

std::thread_local! {
    /// Set while [`evaluate`] runs, so its caught panics print nothing.
    static GUARDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Evaluates an HCL expression, turning arithmetic that leaves the finite numbers into an
/// error. `hcl` asserts in debug builds that every number is finite and panics on `1/0` or
/// `1e300 * 1e300` (release builds carry the infinity on instead): both become
/// [`EvalError::NotFinite`] here, so a user's bad expression never panics. (The assertion's
/// panic is caught; a process-wide panic hook installed once keeps it quiet while
/// [`evaluate`] runs and defers to the previous hook otherwise.)
pub fn evaluate(expr: &hcl::Expression, ctx: &Context) -> Result<Value, EvalError> {
    use hcl::eval::Evaluate;
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !GUARDED.with(|g| g.get()) {
                previous(info)
            }
        }));
    });
    let was = GUARDED.with(|g| g.replace(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| expr.evaluate(ctx)));
    GUARDED.with(|g| g.set(was));
    match r {
        Err(_) => Err(EvalError::NotFinite),
        Ok(Err(e)) => Err(EvalError::Hcl(e)),
        Ok(Ok(v)) if !finite(&v) => Err(EvalError::NotFinite),
        Ok(Ok(v)) => Ok(v),
    }
}

/// True when every number in `v` is finite.
fn finite(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.as_f64().is_none_or(f64::is_finite),
        Value::Array(a) => a.iter().all(finite),
        Value::Object(m) => m.values().all(finite),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(src: &str) -> Result<Value, String> {
        let mut ctx = Context::new();
        declare_all(&mut ctx);
        let e: hcl::Expression = src.parse().map_err(|e: hcl::Error| e.to_string())?;
        evaluate(&e, &ctx).map_err(|e| e.to_string())
    }

    #[test]
    fn arithmetic_that_leaves_the_finite_numbers_is_an_error_not_a_panic() {
        for src in ["1 / 0", "1e300 * 1e300", "-1 / 0", "5 % 0", "[1, 2 / 0]"] {
            let e = eval(src).unwrap_err();
            assert!(e.contains("finite"), "{src}: {e}");
        }
        assert_eq!(eval("7 / 2").unwrap(), Value::from(3.5));
    }

    #[test]
    fn library() {
        assert_eq!(eval(r#"concat([1], [2, 3])"#).unwrap(), eval("[1, 2, 3]").unwrap());
        assert_eq!(eval(r#"merge({a = 1}, {b = 2, a = 3})"#).unwrap(), eval("{a = 3, b = 2}").unwrap());
        assert_eq!(eval(r#"lookup({a = 1}, "b", 7)"#).unwrap(), Value::from(7));
        assert!(eval(r#"lookup({a = 1}, "b")"#).unwrap_err().contains("does not exist"));
        assert_eq!(eval(r#"length("héllo")"#).unwrap(), Value::from(5));
        assert_eq!(eval(r#"keys({b = 1, a = 2})"#).unwrap(), eval(r#"["a", "b"]"#).unwrap());
        assert_eq!(eval(r#"values({b = 1, a = 2})"#).unwrap(), eval("[2, 1]").unwrap());
        assert_eq!(
            eval(r#"format("%s-%03d %.2f %q %%", "x", 7, 3.14159, "y")"#).unwrap(),
            Value::from("x-  7 3.14 \"y\" %")
        );
        assert_eq!(eval(r#"join(",", ["a", 1])"#).unwrap(), Value::from("a,1"));
        assert_eq!(eval(r#"split(",", "a,b")"#).unwrap(), eval(r#"["a", "b"]"#).unwrap());
        assert_eq!(eval(r#"upper("ab")"#).unwrap(), Value::from("AB"));
        assert_eq!(eval(r#"lower("AB")"#).unwrap(), Value::from("ab"));
        assert_eq!(eval("min(3, 1, 2)").unwrap(), Value::from(1));
        assert_eq!(eval("max(3, 1.5)").unwrap(), Value::from(3));
        assert_eq!(eval("ceil(1.2)").unwrap(), Value::from(2));
        assert_eq!(eval("floor(1.8)").unwrap(), Value::from(1));
        assert_eq!(eval(r#"jsondecode(jsonencode({a = [1, "x"]}))"#).unwrap(), eval(r#"{a = [1, "x"]}"#).unwrap());
        assert_eq!(eval("tostring(5)").unwrap(), Value::from("5"));
        assert_eq!(eval(r#"tonumber("2.5")"#).unwrap(), eval("2.5").unwrap());
        assert!(eval(r#"tonumber("x")"#).is_err());
        assert_eq!(eval(r#"coalesce(null, "", "z")"#).unwrap(), Value::from("z"));
        assert_eq!(eval(r#"contains(["a"], "a")"#).unwrap(), Value::from(true));
        assert_eq!(eval("range(3)").unwrap(), eval("[0, 1, 2]").unwrap());
        assert_eq!(eval("range(1, 7, 2)").unwrap(), eval("[1, 3, 5]").unwrap());
    }

    #[test]
    fn file_reads_relative_to_base_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.txt"), "hello").unwrap();
        let _g = BaseDirGuard::set(dir.path().to_path_buf());
        assert_eq!(eval(r#"file("x.txt")"#).unwrap(), Value::from("hello"));
        assert!(eval(r#"file("nope.txt")"#).unwrap_err().contains("cannot read"));
    }
}
