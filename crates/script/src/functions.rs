//! FUNCTION libraries: loading a library's code (its `#!lua name=` line, then the code run
//! once with only `redis.register_function` and the log in reach), the registry of
//! libraries and their functions, and calling one.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mlua::{Function, HookTriggers, MultiValue, Value, VmState};
use resp::ReplyBuf;

use crate::HOOK_INSTRUCTIONS;
use crate::engine::{Engine, Host, Run, ScriptFlags, lua_error_text};
use crate::watch::Watch;

/// How long a library's top-level code may run (Redis's LOAD_TIMEOUT_MS).
const LOAD_TIMEOUT: Duration = Duration::from_millis(500);

pub struct FunctionInfo {
    pub name: String,
    pub description: Option<String>,
    pub flags: ScriptFlags,
    callback: Function,
}

pub struct Library {
    pub name: String,
    /// The whole code as loaded, shebang line included (what FUNCTION LIST WITHCODE,
    /// FUNCTION DUMP and RDB files carry).
    pub code: Bytes,
    pub functions: BTreeMap<String, FunctionInfo>,
}

/// A refusal of FUNCTION LOAD / RESTORE, worded as Redis words it (without the code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LoadError(pub String);

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Splits a shebang line into words as Redis's sdssplitargs does for it: spaces separate,
/// double quotes group (and are dropped).
fn split_args(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quoted, mut started) = (Vec::new(), String::new(), false, false);
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            c if c.is_ascii_whitespace() && !quoted => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

/// The library's name from its first line (`#!lua name=mylib`), and where its code starts.
fn metadata(code: &[u8]) -> Result<(String, usize), LoadError> {
    let fail = |m: &str| Err(LoadError(m.to_owned()));
    if !code.starts_with(b"#!") {
        return fail("Missing library metadata");
    }
    let Some(end) = code.iter().position(|&b| b == b'\n') else {
        return fail("Invalid library metadata");
    };
    let line = String::from_utf8_lossy(&code[..end]);
    let parts = split_args(&line);
    let mut parts = parts.iter().map(String::as_str);
    let engine = parts.next().map(|p| &p[2..]).unwrap_or("");
    let mut name = None;
    for part in parts {
        match part.strip_prefix("name=") {
            Some(_) if name.is_some() => {
                return fail("Invalid metadata value, name argument was given multiple times");
            }
            Some(n) => name = Some(n.to_owned()),
            None => return Err(LoadError(format!("Invalid metadata value given: {part}"))),
        }
    }
    let Some(name) = name else {
        return fail("Library name was not given");
    };
    if !valid_name(&name) {
        return fail(
            "Library names can only contain letters, numbers, or underscores(_) and must be at least one character long",
        );
    }
    if !engine.eq_ignore_ascii_case("lua") {
        return Err(LoadError(format!("Engine '{engine}' not found")));
    }
    Ok((name, end))
}

/// A library's name as its first line gives it; None when that line is not valid
/// metadata (loading the code then says why).
pub fn library_name(code: &[u8]) -> Option<String> {
    metadata(code).ok().map(|(name, _)| name)
}

/// What one `redis.register_function` call asked for.
struct Registration {
    name: String,
    description: Option<String>,
    flags: ScriptFlags,
    callback: Function,
}

fn read_registration(args: MultiValue) -> Result<Registration, String> {
    let args: Vec<Value> = args.into_iter().collect();
    match args.as_slice() {
        [Value::Table(named)] => {
            let (mut name, mut description, mut callback, mut flags) = (None, None, None, ScriptFlags::default());
            for pair in named.clone().pairs::<Value, Value>() {
                let (k, v) = pair.map_err(|e| e.to_string())?;
                let Value::String(k) = k else {
                    return Err("named argument key given to redis.register_function is not a string".into());
                };
                match k.to_string_lossy().to_ascii_lowercase().as_str() {
                    "function_name" => match v {
                        Value::String(s) => name = Some(s.to_string_lossy()),
                        _ => return Err("function_name argument given to redis.register_function must be a string".into()),
                    },
                    "description" => match v {
                        Value::String(s) => description = Some(s.to_string_lossy()),
                        _ => return Err("description argument given to redis.register_function must be a string".into()),
                    },
                    "callback" => match v {
                        Value::Function(f) => callback = Some(f),
                        _ => return Err("callback argument given to redis.register_function must be a function".into()),
                    },
                    "flags" => {
                        let Value::Table(list) = v else {
                            return Err("flags argument to redis.register_function must be a table representing function flags".into());
                        };
                        for flag in list.sequence_values::<Value>() {
                            match flag {
                                Ok(Value::String(s)) if flags.set(&s.to_string_lossy()) => {}
                                _ => return Err("unknown flag given".into()),
                            }
                        }
                    }
                    _ => return Err("unknown argument given to redis.register_function".into()),
                }
            }
            let name = name.ok_or("redis.register_function must get a function name argument")?;
            let callback = callback.ok_or("redis.register_function must get a callback argument")?;
            Ok(Registration { name, description, flags, callback })
        }
        [_] => Err("calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).".into()),
        [name, callback] => {
            let name = match name {
                Value::String(s) => s.to_string_lossy(),
                Value::Integer(i) => i.to_string(),
                Value::Number(n) => n.to_string(),
                _ => return Err("first argument to redis.register_function must be a string".into()),
            };
            let Value::Function(callback) = callback else {
                return Err("second argument to redis.register_function must be a function".into());
            };
            Ok(Registration { name, description: None, flags: ScriptFlags::default(), callback: callback.clone() })
        }
        _ => Err("wrong number of arguments to redis.register_function".into()),
    }
}

/// The function libraries and the interpreter they live in.
pub struct Libraries {
    engine: Engine,
    libs: BTreeMap<String, Library>,
    /// Function name -> library name.
    owners: HashMap<String, String>,
}

impl Libraries {
    pub fn new(watch: Arc<Watch>, on_busy: Arc<dyn Fn() + Send + Sync>) -> mlua::Result<Libraries> {
        Ok(Libraries {
            engine: Engine::new(watch, on_busy)?,
            libs: BTreeMap::new(),
            owners: HashMap::new(),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn libraries(&self) -> impl Iterator<Item = &Library> {
        self.libs.values()
    }

    pub fn function_count(&self) -> usize {
        self.owners.len()
    }

    /// A function by name, ignoring case (as Redis looks functions up).
    pub fn function(&self, name: &str) -> Option<&FunctionInfo> {
        let lib = self.owners.get(&name.to_ascii_lowercase())?;
        self.libs
            .get(lib)?
            .functions
            .values()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// FUNCTION LOAD: compiles and registers a library; its name.
    pub fn load(&mut self, code: &Bytes, replace: bool) -> Result<String, LoadError> {
        let (name, start) = metadata(code)?;
        if self.libs.contains_key(&name) && !replace {
            return Err(LoadError(format!("Library '{name}' already exists")));
        }
        let functions = self.compile(&code[start..])?;
        for f in functions.keys() {
            if self
                .owners
                .get(&f.to_ascii_lowercase())
                .is_some_and(|owner| *owner != name)
            {
                return Err(LoadError(format!("Function {f} already exists")));
            }
        }
        self.delete(&name);
        for f in functions.keys() {
            self.owners.insert(f.to_ascii_lowercase(), name.clone());
        }
        self.libs.insert(
            name.clone(),
            Library {
                name: name.clone(),
                code: code.clone(),
                functions,
            },
        );
        Ok(name)
    }

    /// Runs a library's top-level code with the load API in reach; the functions it
    /// registered.
    fn compile(&mut self, code: &[u8]) -> Result<BTreeMap<String, FunctionInfo>, LoadError> {
        let lua = &self.engine.lua;
        let chunk = lua
            .load(code)
            .set_name("@user_function")
            .into_function()
            .map_err(|e| LoadError(format!("Error compiling function: {}", lua_error_text(&e))))?;
        let registered: RefCell<BTreeMap<String, FunctionInfo>> = RefCell::new(BTreeMap::new());
        let deadline = Instant::now() + LOAD_TIMEOUT;
        let _ = lua.set_hook(
            HookTriggers::new().every_nth_instruction(HOOK_INSTRUCTIONS),
            move |_, _| {
                if Instant::now() > deadline {
                    return Err(mlua::Error::runtime("FUNCTION LOAD timeout"));
                }
                Ok(VmState::Continue)
            },
        );
        let _ = self
            .engine
            .g_meta
            .raw_set("__index", self.engine.load_api.clone());
        let hidden = self.engine.hidden().clone();
        let outcome = lua.scope(|scope| {
            let register = scope.create_function(|_, args: MultiValue| {
                let r = match read_registration(args) {
                    Ok(r) => r,
                    Err(e) => return Ok(Some(e)),
                };
                if !valid_name(&r.name) {
                    // Redis words this check as it words the library's.
                    return Ok(Some("Library names can only contain letters, numbers, or underscores(_) and must be at least one character long".to_owned()));
                }
                let mut registered = registered.borrow_mut();
                if registered.keys().any(|k| k.eq_ignore_ascii_case(&r.name)) {
                    return Ok(Some("Function already exists in the library".to_owned()));
                }
                registered.insert(
                    r.name.clone(),
                    FunctionInfo {
                        name: r.name,
                        description: r.description,
                        flags: r.flags,
                        callback: r.callback,
                    },
                );
                Ok(None)
            })?;
            hidden.raw_set("register", register)?;
            let runner: Function = hidden.raw_get("run")?;
            let _ = lua.set_memory_limit(crate::LUA_MEMORY_MAX_BYTES);
            let result = runner.call::<(bool, Value)>(chunk);
            let _ = lua.set_memory_limit(0);
            result
        });
        let _ = hidden.raw_set("register", Value::Nil);
        let _ = self
            .engine
            .g_meta
            .raw_set("__index", self.engine.api.clone());
        let _ = self.engine.install_run_hook();
        let failure = match outcome {
            Ok((true, _)) => None,
            Ok((false, Value::Table(t))) => Some(
                t.raw_get::<Option<String>>("err")
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| "ERR unknown error".into()),
            ),
            Ok((false, other)) => Some(format!("ERR {other:?}")),
            Err(e) => Some(format!("ERR {}", lua_error_text(&e))),
        };
        if let Some(msg) = failure {
            return Err(LoadError(format!("Error registering functions: {msg}")));
        }
        let registered = registered.into_inner();
        if registered.is_empty() {
            return Err(LoadError("No functions registered".into()));
        }
        Ok(registered)
    }

    /// FUNCTION DELETE; false when there is no such library.
    pub fn delete(&mut self, name: &str) -> bool {
        let Some(lib) = self.libs.remove(name) else {
            return false;
        };
        for f in lib.functions.keys() {
            self.owners.remove(&f.to_ascii_lowercase());
        }
        true
    }

    /// FUNCTION FLUSH: no libraries, and a fresh interpreter.
    pub fn flush(&mut self) -> mlua::Result<()> {
        self.libs.clear();
        self.owners.clear();
        self.engine.reset()
    }

    /// Replaces every library by `codes` (FUNCTION RESTORE FLUSH, loading an RDB), or
    /// nothing changes when one of them fails.
    pub fn replace_all(&mut self, codes: &[Bytes]) -> Result<(), LoadError> {
        let saved: Vec<Bytes> = self.libs.values().map(|l| l.code.clone()).collect();
        self.libs.clear();
        self.owners.clear();
        for code in codes {
            if let Err(e) = self.load(code, false) {
                self.libs.clear();
                self.owners.clear();
                for code in &saved {
                    let _ = self.load(code, false);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// FCALL: runs a function (looked up by the caller) and writes its reply.
    pub fn call(&mut self, name: &str, run: &Run, host: &mut dyn Host, out: &mut ReplyBuf) {
        let Some(callback) = self.function(name).map(|f| f.callback.clone()) else {
            out.error("ERR Function not found");
            return;
        };
        self.engine.call_function(&callback, run, host, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn libs() -> Libraries {
        Libraries::new(Arc::new(Watch::default()), Arc::new(|| {})).unwrap()
    }

    #[test]
    fn metadata_errors_are_redis_words() {
        assert_eq!(
            metadata(b"return 1").unwrap_err().0,
            "Missing library metadata"
        );
        assert_eq!(
            metadata(b"#!lua name=x").unwrap_err().0,
            "Invalid library metadata"
        );
        assert_eq!(
            metadata(b"#!lua\n").unwrap_err().0,
            "Library name was not given"
        );
        assert_eq!(
            metadata(b"#!lua foo=bar\n").unwrap_err().0,
            "Invalid metadata value given: foo=bar"
        );
        assert_eq!(
            metadata(b"#!py name=x\n").unwrap_err().0,
            "Engine 'py' not found"
        );
        assert_eq!(
            metadata(b"#!lua name=a-b\n")
                .unwrap_err()
                .0
                .split(' ')
                .next(),
            Some("Library")
        );
        assert_eq!(
            metadata(b"#!LUA name=ok\nx").unwrap(),
            ("ok".to_owned(), 13)
        );
    }

    #[test]
    fn load_replace_and_conflicts() {
        let mut l = libs();
        let code = Bytes::from_static(
            b"#!lua name=lib1\nredis.register_function('f1', function(keys, args) return 1 end)",
        );
        assert_eq!(l.load(&code, false).unwrap(), "lib1");
        assert_eq!(
            l.load(&code, false).unwrap_err().0,
            "Library 'lib1' already exists"
        );
        assert_eq!(l.load(&code, true).unwrap(), "lib1");
        let other = Bytes::from_static(
            b"#!lua name=lib2\nredis.register_function('f1', function() return 2 end)",
        );
        assert_eq!(
            l.load(&other, false).unwrap_err().0,
            "Function f1 already exists"
        );
        let none = Bytes::from_static(b"#!lua name=lib3\nlocal x = 1");
        assert_eq!(
            l.load(&none, false).unwrap_err().0,
            "No functions registered"
        );
        let calls = Bytes::from_static(b"#!lua name=lib4\nredis.call('ping')");
        let e = l.load(&calls, false).unwrap_err().0;
        assert!(e.starts_with("Error registering functions: "), "{e}");
        let named = Bytes::from_static(
            b"#!lua name=lib5\nredis.register_function{function_name='f5', callback=function() return 5 end, flags={'no-writes'}, description='five'}",
        );
        l.load(&named, false).unwrap();
        let f = l.function("f5").unwrap();
        assert!(f.flags.no_writes);
        assert_eq!(f.description.as_deref(), Some("five"));
        assert!(l.delete("lib5"));
        assert!(l.function("f5").is_none());
    }
}
