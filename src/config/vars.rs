//! Variable types and values from outside the job: `type = list(string)` and friends,
//! conversion of a value to its declared type, and parsing of `-var k=v` /
//! `SKYFORM_VAR_<name>` strings. Pure; the loader does the file reading.

use hcl::{Map, Value};
use hcl_edit::expr::Expression as EExpr;
use std::path::PathBuf;

/// A `-var` or `-var-file` argument, in command-line order.
#[derive(Debug, Clone, PartialEq)]
pub enum VarArg {
    /// `NAME=VALUE`
    Var(String),
    File(PathBuf),
}

/// A declared variable type.
#[derive(Debug, Clone, PartialEq)]
pub enum VarType {
    Any,
    String,
    Number,
    Bool,
    List(Box<VarType>),
    Map(Box<VarType>),
    Object(Vec<(String, VarType)>),
}

impl VarType {
    /// Reads a type expression such as `list(string)`.
    pub fn from_expr(e: &EExpr) -> Result<VarType, String> {
        match e {
            EExpr::Variable(v) => match v.as_str() {
                "any" => Ok(VarType::Any),
                "string" => Ok(VarType::String),
                "number" => Ok(VarType::Number),
                "bool" => Ok(VarType::Bool),
                "list" | "set" | "map" => Ok(VarType::from_name(v.as_str(), VarType::Any)),
                other => Err(format!("`{other}` is not a type")),
            },
            EExpr::FuncCall(fc) => {
                let name = fc.name.name.as_str();
                let args: Vec<&EExpr> = fc.args.iter().collect();
                match (name, args.as_slice()) {
                    ("list" | "set" | "map", [inner]) => Ok(VarType::from_name(name, VarType::from_expr(inner)?)),
                    ("object", [EExpr::Object(o)]) => {
                        let mut fields = Vec::new();
                        for (k, v) in o.iter() {
                            let key = match k {
                                hcl_edit::expr::ObjectKey::Ident(i) => i.as_str().to_string(),
                                hcl_edit::expr::ObjectKey::Expression(EExpr::String(s)) => s.value().to_string(),
                                _ => return Err("object type keys must be names".into()),
                            };
                            fields.push((key, VarType::from_expr(v.expr())?));
                        }
                        Ok(VarType::Object(fields))
                    }
                    _ => Err(format!("`{name}(...)` is not a type constructor of one argument")),
                }
            }
            _ => Err("a type must be a type keyword such as string, or a constructor such as list(string)".into()),
        }
    }

    fn from_name(name: &str, inner: VarType) -> VarType {
        match name {
            "map" => VarType::Map(Box::new(inner)),
            _ => VarType::List(Box::new(inner)),
        }
    }

    fn describe(&self) -> String {
        match self {
            VarType::Any => "any".into(),
            VarType::String => "string".into(),
            VarType::Number => "number".into(),
            VarType::Bool => "bool".into(),
            VarType::List(i) => format!("list({})", i.describe()),
            VarType::Map(i) => format!("map({})", i.describe()),
            VarType::Object(f) => format!(
                "object({{{}}})",
                f.iter().map(|(k, t)| format!("{k} = {}", t.describe())).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// Converts a value to this type, as Terraform does (numbers and bools to strings and
    /// back where the text allows).
    pub fn convert(&self, v: &Value) -> Result<Value, String> {
        if v.is_null() {
            return Ok(Value::Null);
        }
        let bad = || {
            Err(format!("a {} is required, got `{}`", self.describe(), serde_json::to_string(v).unwrap_or_default()))
        };
        match self {
            VarType::Any => Ok(v.clone()),
            VarType::String => match v {
                Value::String(_) => Ok(v.clone()),
                Value::Number(n) => Ok(Value::String(n.to_string())),
                Value::Bool(b) => Ok(Value::String(b.to_string())),
                _ => bad(),
            },
            VarType::Number => match v {
                Value::Number(_) => Ok(v.clone()),
                Value::String(s) => match s.trim().parse::<f64>() {
                    Ok(f) => hcl::to_value(f).map_err(|e| e.to_string()),
                    Err(_) => bad(),
                },
                _ => bad(),
            },
            VarType::Bool => match v {
                Value::Bool(_) => Ok(v.clone()),
                Value::String(s) if s == "true" => Ok(Value::Bool(true)),
                Value::String(s) if s == "false" => Ok(Value::Bool(false)),
                _ => bad(),
            },
            VarType::List(inner) => match v {
                Value::Array(a) => a.iter().map(|x| inner.convert(x)).collect::<Result<Vec<_>, _>>().map(Value::Array),
                _ => bad(),
            },
            VarType::Map(inner) => match v {
                Value::Object(o) => {
                    let mut m = Map::new();
                    for (k, x) in o {
                        m.insert(k.clone(), inner.convert(x).map_err(|e| format!("element \"{k}\": {e}"))?);
                    }
                    Ok(Value::Object(m))
                }
                _ => bad(),
            },
            VarType::Object(fields) => match v {
                Value::Object(o) => {
                    let mut m = Map::new();
                    for (k, t) in fields {
                        let x = o.get(k).ok_or_else(|| format!("attribute \"{k}\" is required"))?;
                        m.insert(k.clone(), t.convert(x).map_err(|e| format!("attribute \"{k}\": {e}"))?);
                    }
                    Ok(Value::Object(m))
                }
                _ => bad(),
            },
        }
    }
}

/// Parses a value given on the command line or in the environment: taken literally for
/// `string` and untyped variables, as an HCL expression otherwise.
pub fn parse_cli_value(ty: &VarType, raw: &str) -> Result<Value, String> {
    match ty {
        VarType::String | VarType::Any => Ok(Value::String(raw.to_string())),
        VarType::Number | VarType::Bool => ty.convert(&Value::String(raw.trim().to_string())),
        _ => {
            let e: hcl::Expression = raw.parse().map_err(|e: hcl::Error| format!("cannot parse `{raw}`: {e}"))?;
            let v = super::functions::evaluate(&e, &hcl::eval::Context::new())
                .map_err(|e| format!("`{raw}` must be a literal value: {e}"))?;
            ty.convert(&v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(s: &str) -> VarType {
        VarType::from_expr(&hcl_edit::parser::parse_expr(s).unwrap()).unwrap()
    }

    #[test]
    fn types_and_conversion() {
        assert_eq!(ty("list(string)"), VarType::List(Box::new(VarType::String)));
        assert!(VarType::from_expr(&hcl_edit::parser::parse_expr("strng").unwrap()).is_err());
        assert_eq!(ty("number").convert(&Value::from("3")).unwrap(), Value::from(3.0));
        assert!(ty("number").convert(&Value::from("x")).is_err());
        assert_eq!(ty("string").convert(&Value::from(3)).unwrap(), Value::from("3"));
        assert!(ty("object({a = number})").convert(&hcl::value!({ b = 1 })).unwrap_err().contains("\"a\" is required"));
    }

    #[test]
    fn cli_values() {
        assert_eq!(parse_cli_value(&VarType::String, "a b").unwrap(), Value::from("a b"));
        assert_eq!(parse_cli_value(&VarType::Number, "5").unwrap(), Value::from(5.0));
        assert_eq!(parse_cli_value(&ty("list(number)"), "[1, 2]").unwrap(), hcl::value!([1, 2]));
        assert!(parse_cli_value(&ty("list(number)"), "[x]").is_err());
    }
}
