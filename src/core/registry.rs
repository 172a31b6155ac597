//! The schema registry: `schemas/` loaded, checked and compiled once.
//!
//! Layout of the folder (data, not code):
//! - `catalog.json`: domains, their topic and key field, and each type's versions;
//! - `<domain>/<Type>.vN.schema.json`: the JSON Schema of a type's `data` at version N;
//! - `<domain>/<Type>.vN-to-vN+1.upcast.json`: how to turn version N data into N+1, where the
//!   newer version is not simply a superset (see [`crate::upcast`]);
//! - `README.md` files, for people.
//!
//! Anything else, a schema the catalog does not list, a listed schema that is missing, or a schema
//! that is not valid JSON Schema stops the load with the file's path and the reason.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::Validator;
use serde_json::Value;

use crate::catalog::Catalog;
use crate::classification;
use crate::contract::{describe, ContractError, ValidatedEvent};
use crate::envelope::{self, CloudEvent, EnvelopeError};
use crate::upcast::Upcaster;

pub const CATALOG_FILE: &str = "catalog.json";

/// A registry file that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct RegistryError {
    /// The file, as the user would find it (`schemas/accounts/FundsDeposited.v2.schema.json`).
    pub path: String,
    pub reason: String,
}

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The body is not a batch at all.
    #[error(transparent)]
    Body(EnvelopeError),
    /// Some events are invalid: each with its index in the batch. None of the batch is valid.
    #[error("{} invalid event(s) in the batch", .0.len())]
    Events(Vec<(usize, ContractError)>),
}

/// One version of one type's data contract.
#[derive(Debug, Clone)]
pub struct SchemaVersion {
    pub version: u32,
    /// The file, relative to the registry folder.
    pub path: String,
    pub schema: Value,
    validator: Validator,
    /// What an event of this version may hold once stored: each personal field its value as
    /// the schema says, or sealed (`elc1.…`). `None` when the version has no personal field.
    stored_validator: Option<Validator>,
    /// Where its outermost personal fields are, as JSON pointers into `data`: what is sealed.
    personal_pointers: Vec<String>,
    /// The personal fields with a blind index: (pointer, index name).
    blind_indexes: Vec<(String, String)>,
}

impl SchemaVersion {
    /// Whether `data` satisfies this version's schema.
    pub fn accepts(&self, data: &Value) -> bool {
        self.validator.is_valid(data)
    }
}

/// Everything the registry knows of one event type.
#[derive(Debug, Clone)]
pub struct TypeContract {
    pub event_type: String,
    pub domain: String,
    /// Catalog topic, before any namespace prefix.
    pub topic: String,
    /// The data field holding the entity id (the subject and Kafka key).
    pub key: String,
    /// The data field holding the id of the person its personal fields are about, if it has one.
    pub data_subject: Option<String>,
    pub versions: BTreeMap<u32, SchemaVersion>,
    /// Upcasters by the version they start from.
    pub upcasters: BTreeMap<u32, Upcaster>,
}

impl TypeContract {
    /// The highest version: the only one projections see.
    pub fn current(&self) -> u32 {
        *self.versions.keys().next_back().expect("a type has at least one version")
    }

    /// `data` of `version` brought up to the current version.
    pub fn upcast(&self, version: u32, data: &Value) -> Value {
        let mut data = data.clone();
        for step in version..self.current() {
            if let Some(upcaster) = self.upcasters.get(&step) {
                upcaster.apply(&mut data);
            }
        }
        data
    }
}

/// The loaded registry.
#[derive(Debug, Clone)]
pub struct Registry {
    catalog: Catalog,
    contracts: BTreeMap<String, TypeContract>,
    /// How file paths are shown: the folder given, or what an application names its built-in
    /// registry.
    shown_root: String,
}

impl Registry {
    /// A registry read from a folder laid out like `schemas/`.
    pub fn from_dir(dir: &Path) -> Result<Self, RegistryError> {
        let shown_root = dir.display().to_string();
        let mut files = BTreeMap::new();
        read_tree(dir, dir, &mut files).map_err(|(path, error)| RegistryError {
            path: path.display().to_string(),
            reason: format!("cannot read: {error}"),
        })?;
        Self::from_files(files, shown_root.trim_end_matches('/'))
    }

    /// A registry from file paths (relative to the registry folder) and their contents.
    pub fn from_files(files: BTreeMap<String, String>, shown_root: &str) -> Result<Self, RegistryError> {
        let error = |path: &str, reason: String| RegistryError { path: format!("{shown_root}/{path}"), reason };
        let catalog_text = files
            .get(CATALOG_FILE)
            .ok_or_else(|| error(CATALOG_FILE, "missing: the registry needs a catalog".into()))?;
        let catalog = Catalog::from_json(catalog_text).map_err(|reason| error(CATALOG_FILE, reason))?;

        let mut contracts = BTreeMap::new();
        let mut expected_files = BTreeSet::from([CATALOG_FILE.to_string()]);
        for domain in catalog.domains() {
            for (event_type, entry) in &domain.types {
                let type_name = &event_type[domain.name.len() + 1..];
                let mut versions = BTreeMap::new();
                for &version in &entry.versions {
                    let path = schema_path(&domain.name, type_name, version);
                    let text = files.get(&path).ok_or_else(|| {
                        error(CATALOG_FILE, format!("{event_type} v{version}: no schema file {shown_root}/{path}"))
                    })?;
                    let schema = load_schema(text, &domain.key).map_err(|reason| error(&path, reason))?;
                    let validator = jsonschema::validator_for(&schema)
                        .map_err(|e| error(&path, format!("not a valid JSON Schema: {e}")))?;
                    let stored = sealable(&schema);
                    let stored_validator =
                        (stored != schema)
                            .then(|| jsonschema::validator_for(&stored))
                            .transpose()
                            .map_err(|e| error(&path, format!("not a valid JSON Schema once sealable: {e}")))?;
                    expected_files.insert(path.clone());
                    let mut personal = Vec::new();
                    find_personal(&schema, "", &mut personal);
                    let blind_indexes = personal
                        .iter()
                        .filter_map(|(pointer, index)| Some((pointer.clone(), index.clone()?)))
                        .collect();
                    let personal_pointers = personal.into_iter().map(|(pointer, _)| pointer).collect();
                    versions.insert(
                        version,
                        SchemaVersion {
                            version,
                            path,
                            schema,
                            validator,
                            stored_validator,
                            personal_pointers,
                            blind_indexes,
                        },
                    );
                }
                let mut upcasters = BTreeMap::new();
                for &version in &entry.versions[..entry.versions.len() - 1] {
                    let path = upcaster_path(&domain.name, type_name, version);
                    if let Some(text) = files.get(&path) {
                        let upcaster = Upcaster::parse(&path, text).map_err(|reason| error(&path, reason))?;
                        if upcaster.from != version {
                            return Err(error(
                                &path,
                                format!("its name says from v{version}, its content from v{}", upcaster.from),
                            ));
                        }
                        expected_files.insert(path);
                        upcasters.insert(version, upcaster);
                    }
                }
                let contract = TypeContract {
                    event_type: event_type.clone(),
                    domain: domain.name.clone(),
                    topic: domain.topic.clone(),
                    key: domain.key.clone(),
                    data_subject: entry.data_subject.clone(),
                    versions,
                    upcasters,
                };
                contracts.insert(event_type.clone(), contract);
            }
        }
        for path in files.keys() {
            let documentation = path.ends_with(".md");
            if !documentation && !expected_files.contains(path) {
                return Err(error(
                    path,
                    "not in the catalog: a registry file is catalog.json, <domain>/<Type>.vN.schema.json for a listed \
                     version, or <domain>/<Type>.vN-to-vN+1.upcast.json between listed versions"
                        .into(),
                ));
            }
        }
        Ok(Self { catalog, contracts, shown_root: shown_root.to_string() })
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn contract(&self, event_type: &str) -> Option<&TypeContract> {
        self.contracts.get(event_type)
    }

    pub fn contracts(&self) -> impl Iterator<Item = &TypeContract> {
        self.contracts.values()
    }

    /// A registry file's path as users see it.
    pub fn shown_path(&self, relative: &str) -> String {
        format!("{}/{relative}", self.shown_root)
    }

    /// Validates a batch-mode body as a whole: every event must pass, or the errors of all that
    /// failed are returned with their index (0-based) and nothing is valid.
    pub fn validate_batch(&self, bytes: &[u8]) -> Result<Vec<ValidatedEvent>, BatchError> {
        let events = envelope::parse_batch(bytes).map_err(BatchError::Body)?;
        let mut valid = Vec::with_capacity(events.len());
        let mut errors = Vec::new();
        for (index, event) in events.into_iter().enumerate() {
            let checked = envelope::check_size(&event)
                .and_then(|()| CloudEvent::from_value(event))
                .map_err(ContractError::from)
                .and_then(|envelope| self.validate(envelope));
            match checked {
                Ok(event) => valid.push(event),
                Err(error) => errors.push((index, error)),
            }
        }
        if errors.is_empty() {
            Ok(valid)
        } else {
            Err(BatchError::Events(errors))
        }
    }

    /// Parses and validates one structured-mode event.
    pub fn validate_slice(&self, bytes: &[u8]) -> Result<ValidatedEvent, ContractError> {
        self.validate(CloudEvent::from_slice(bytes)?)
    }

    /// Reads the event a Kafka record carries, in structured or binary content mode (see
    /// [`crate::binding::from_kafka_record`]), and validates it.
    pub fn validate_record(
        &self,
        headers: &[(String, Vec<u8>)],
        value: Option<&[u8]>,
    ) -> Result<ValidatedEvent, ContractError> {
        self.validate_record_with(headers, value, SealedFields::Named)
    }

    /// Like [`Registry::validate_record`], its sealed personal fields handed on as `sealed` says.
    pub fn validate_record_with(
        &self,
        headers: &[(String, Vec<u8>)],
        value: Option<&[u8]>,
        sealed: SealedFields,
    ) -> Result<ValidatedEvent, ContractError> {
        self.check(crate::binding::from_kafka_record(headers, value)?, Side::Stored(sealed))
    }

    /// Parses and validates an event written to be published later (an outbox row): like one
    /// read back from Kafka, its personal fields may already be sealed, each for this very event,
    /// field and subject (one sealed for anything else is refused).
    pub fn validate_unpublished_slice(&self, bytes: &[u8]) -> Result<ValidatedEvent, ContractError> {
        self.check(CloudEvent::from_slice(bytes)?, Side::Unpublished)
    }

    /// The data subject of `event` when it holds personal data (a personal field with a value),
    /// whose key its personal fields are sealed under.
    pub fn personal_subject(&self, event: &ValidatedEvent) -> Option<String> {
        self.subject_holding(event, |_| true)
    }

    /// The names of the blind indexes the registry's schemas declare (`x-blind-index`), sorted.
    pub fn blind_index_names(&self) -> Vec<String> {
        let names: std::collections::BTreeSet<&String> = self
            .contracts
            .values()
            .flat_map(|c| c.versions.values())
            .flat_map(|v| v.blind_indexes.iter().map(|(_, name)| name))
            .collect();
        names.into_iter().cloned().collect()
    }

    /// Each type with personal fields, with the data field naming its subject.
    pub fn data_subject_fields(&self) -> Vec<(String, String)> {
        let subjects = self.contracts.values().filter_map(|c| Some((c.event_type.clone(), c.data_subject.clone()?)));
        subjects.collect()
    }

    /// Sets each personal field of `event` (a CloudEvent as JSON, valid or not) still holding a
    /// value in clear to `null`, by its type's registered version: true when one was. Sealed
    /// values are left: they are unreadable once their subject is erased.
    pub fn remove_clear_personal(&self, event: &mut Value) -> bool {
        let Some(contract) = event.get("type").and_then(Value::as_str).and_then(|t| self.contracts.get(t)) else {
            return false;
        };
        let version = event.get("dataversion").map_or(Some(1), Value::as_u64);
        let Some(version) = version.and_then(|v| u32::try_from(v).ok()).and_then(|v| contract.versions.get(&v)) else {
            return false;
        };
        let Some(data) = event.get_mut("data") else { return false };
        let mut removed = false;
        for pointer in &version.personal_pointers {
            if let Some(value) = at_mut(data, pointer).filter(|v| !v.is_null() && !is_sealed_here(v)) {
                *value = Value::Null;
                removed = true;
            }
        }
        removed
    }

    /// The data subject of `event` when one of its personal fields holds a value not sealed yet.
    pub fn clear_personal_subject(&self, event: &ValidatedEvent) -> Option<String> {
        self.subject_holding(event, |value| !is_sealed_here(value))
    }

    fn subject_holding(&self, event: &ValidatedEvent, counts: impl Fn(&Value) -> bool) -> Option<String> {
        let contract = self.contracts.get(&event.envelope.event_type)?;
        let version = contract.versions.get(&event.envelope.dataversion)?;
        let data = event.envelope.data.as_ref()?;
        let holds = version.personal_pointers.iter().any(|p| at(data, p).is_some_and(|v| !v.is_null() && counts(v)));
        let subject = field(data.as_object()?, contract.data_subject.as_ref()?)?.as_str()?;
        holds.then(|| subject.to_string())
    }

    /// `event` with each personal field of its data sealed under `key`, the key of `subject` (as
    /// [`Registry::personal_subject`] named it), bound to the event id, the type, the field and
    /// the subject; its current-version data follows. With it, the clear values of its
    /// blind-indexed fields, each with the name of its index, found in the same pass.
    pub fn seal_personal(
        &self,
        event: ValidatedEvent,
        subject: &str,
        key: &crate::cipher::DataKey,
    ) -> (ValidatedEvent, Vec<(String, Value)>) {
        self.seal_where(event, subject, key, |_| true)
    }

    /// Like [`Registry::seal_personal`], leaving fields already sealed as they are: for events
    /// validated by [`Registry::validate_unpublished_slice`], whose sealed fields are known to be
    /// sealed for where they are (`subject` as [`Registry::clear_personal_subject`] named it).
    pub fn seal_clear_personal(
        &self,
        event: ValidatedEvent,
        subject: &str,
        key: &crate::cipher::DataKey,
    ) -> (ValidatedEvent, Vec<(String, Value)>) {
        self.seal_where(event, subject, key, |value| !is_sealed_here(value))
    }

    fn seal_where(
        &self,
        mut event: ValidatedEvent,
        subject: &str,
        key: &crate::cipher::DataKey,
        sealing: impl Fn(&Value) -> bool,
    ) -> (ValidatedEvent, Vec<(String, Value)>) {
        let mut indexed = Vec::new();
        let Some(contract) = self.contracts.get(&event.envelope.event_type) else { return (event, indexed) };
        let Some(version) = contract.versions.get(&event.envelope.dataversion) else { return (event, indexed) };
        let Some(data) = event.envelope.data.as_mut() else { return (event, indexed) };
        // At the current version the data projections see is the same: sealed in place too,
        // instead of upcasting a copy again.
        let current = version.version == contract.current();
        let mut sealed_any = false;
        for pointer in &version.personal_pointers {
            let Some(value) = at_mut(data, pointer).filter(|v| !v.is_null() && sealing(v)) else { continue };
            if let Some((_, index)) = version.blind_indexes.iter().find(|(indexed, _)| indexed == pointer) {
                indexed.push((index.clone(), value.clone()));
            }
            let context = crate::cipher::FieldContext {
                event_id: &event.envelope.id,
                event_type: &event.envelope.event_type,
                pointer,
                subject,
            };
            let sealed = Value::String(crate::cipher::seal(key, &context, value));
            if current {
                if let Some(projected) = at_mut(&mut event.data, pointer) {
                    *projected = sealed.clone();
                }
            }
            *value = sealed;
            sealed_any = true;
        }
        if sealed_any && !current {
            event.data = contract.upcast(version.version, data);
        }
        (event, indexed)
    }

    /// Validates every envelope, stopping at the first refused: its index and why.
    pub fn validate_all(&self, envelopes: Vec<CloudEvent>) -> Result<Vec<ValidatedEvent>, (usize, ContractError)> {
        envelopes.into_iter().enumerate().map(|(index, event)| self.validate(event).map_err(|e| (index, e))).collect()
    }

    /// Validates an envelope: type and version registered, subject present, data valid for its
    /// version, subject equal to the key field; then upcasts the data to the current version.
    pub fn validate(&self, envelope: CloudEvent) -> Result<ValidatedEvent, ContractError> {
        self.check(envelope, Side::WayIn)
    }

    fn check(&self, mut envelope: CloudEvent, side: Side) -> Result<ValidatedEvent, ContractError> {
        let contract = self
            .contracts
            .get(&envelope.event_type)
            .ok_or_else(|| ContractError::UnknownType(envelope.event_type.clone()))?;
        let Some(version) = contract.versions.get(&envelope.dataversion) else {
            let known: Vec<String> = contract.versions.keys().map(u32::to_string).collect();
            return Err(ContractError::UnknownDataVersion {
                event_type: envelope.event_type.clone(),
                version: envelope.dataversion,
                known: known.join(", "),
            });
        };
        let Some(subject) = &envelope.subject else {
            return Err(ContractError::MissingSubject { key_field: contract.key.clone() });
        };
        let Some(data) = &envelope.data else {
            return Err(ContractError::MissingData);
        };
        let validator = match (side, &version.stored_validator) {
            (Side::Stored(_) | Side::Unpublished, Some(stored)) => stored,
            _ => &version.validator,
        };
        if let Some(error) = validator.iter_errors(data).next() {
            return Err(data_error(&error, contract, version));
        }
        let key = data.get(&contract.key).and_then(Value::as_str).expect("schemas require the key field as a string");
        if subject != key {
            return Err(ContractError::SubjectMismatch {
                subject: subject.clone(),
                key_field: contract.key.clone(),
                key: key.to_string(),
            });
        }
        if let (Side::Stored(_) | Side::Unpublished, Some(subject_field)) = (side, &contract.data_subject) {
            let data = envelope.data.as_mut().expect("checked above");
            let subject = data.get(subject_field).and_then(Value::as_str).unwrap_or_default().to_string();
            for pointer in &version.personal_pointers {
                let Some(sealed) = at_mut(data, pointer).filter(|v| is_sealed_here(v)) else { continue };
                let expected = crate::cipher::FieldContext {
                    event_id: &envelope.id,
                    event_type: &envelope.event_type,
                    pointer,
                    subject: &subject,
                };
                // A sealed value names or checks what it was sealed for (and cannot be changed
                // without failing to open): one copied from another event, field or subject is
                // refused here. Read from Kafka for a reader that keeps it, a short form is named,
                // since a projection's tables are read without the event.
                let text = sealed.as_str().expect("sealed values are text");
                let checked = match side {
                    Side::Stored(SealedFields::Named) => {
                        crate::cipher::name(text, &expected).map(|named| *sealed = Value::String(named))
                    }
                    _ => crate::cipher::check(text, &expected),
                };
                if checked.is_err() {
                    return Err(ContractError::InvalidValue {
                        pointer: format!("/data{pointer}"),
                        reason: "holds a value sealed for another event, field or subject".into(),
                    });
                }
            }
        }
        let data = contract.upcast(version.version, envelope.data.as_ref().expect("checked above"));
        Ok(ValidatedEvent { envelope, topic: contract.topic.clone(), data, current_version: contract.current() })
    }
}

/// The value at JSON `pointer` in `data`, like [`Value::pointer`] without allocating for tokens
/// that need no unescaping (this runs for every personal field of every event).
fn at<'v>(data: &'v Value, pointer: &str) -> Option<&'v Value> {
    pointer.strip_prefix('/')?.split('/').try_fold(data, |value, token| match value {
        Value::Object(map) => field(map, &unescaped(token)),
        Value::Array(items) => items.get(token.parse::<usize>().ok()?),
        _ => None,
    })
}

/// Like [`at`], mutable.
fn at_mut<'v>(data: &'v mut Value, pointer: &str) -> Option<&'v mut Value> {
    pointer.strip_prefix('/')?.split('/').try_fold(data, |value, token| match value {
        Value::Object(map) => field_mut(map, &unescaped(token)),
        Value::Array(items) => items.get_mut(token.parse::<usize>().ok()?),
        _ => None,
    })
}

/// Objects up to this many members are searched in order: faster than hashing the name (the map
/// hashes with SipHash) for the few members an event's data usually has.
const SCANNED_MEMBERS: usize = 12;

/// The member `name` of `map`.
fn field<'v>(map: &'v serde_json::Map<String, Value>, name: &str) -> Option<&'v Value> {
    match map.len() <= SCANNED_MEMBERS {
        true => map.iter().find(|(member, _)| member.as_str() == name).map(|(_, value)| value),
        false => map.get(name),
    }
}

/// Like [`field`], mutable.
fn field_mut<'v>(map: &'v mut serde_json::Map<String, Value>, name: &str) -> Option<&'v mut Value> {
    match map.len() <= SCANNED_MEMBERS {
        true => map.iter_mut().find(|(member, _)| member.as_str() == name).map(|(_, value)| value),
        false => map.get_mut(name),
    }
}

/// A JSON pointer token as the key it names (RFC 6901: `~1` is `/`, `~0` is `~`).
fn unescaped(token: &str) -> std::borrow::Cow<'_, str> {
    match token.contains('~') {
        true => token.replace("~1", "/").replace("~0", "~").into(),
        false => token.into(),
    }
}

/// Whether a personal field of a stored-side validated event is sealed (the check made sure it
/// is sealed for where it is).
fn is_sealed_here(value: &Value) -> bool {
    value.as_str().is_some_and(|text| {
        text.starts_with(crate::cipher::SEALED_PREFIX) || text.starts_with(crate::cipher::SHORT_PREFIX)
    })
}

/// The JSON pointers of `schema`'s outermost personal fields, below `prefix`, each with its blind
/// index's name when it has one.
fn find_personal(schema: &Value, prefix: &str, found: &mut Vec<(String, Option<String>)>) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else { return };
    for (name, field) in properties {
        let pointer = format!("{prefix}/{}", name.replace('~', "~0").replace('/', "~1"));
        let class = field.get(classification::KEYWORD).and_then(classification::Classification::parse);
        if class.is_some_and(|c| c.is_personal()) {
            let index = field.get(classification::BLIND_INDEX).and_then(Value::as_str).map(str::to_string);
            found.push((pointer, index));
        } else {
            find_personal(field, &pointer, found);
        }
    }
}

/// Which events are checked: published ones, whose personal fields are in clear; stored ones
/// (read back from Kafka), whose personal fields may be sealed, and are named for projections;
/// and ones written to be published later (outbox rows), which may be sealed, as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    WayIn,
    Stored(SealedFields),
    Unpublished,
}

/// How the sealed personal fields of an event read from Kafka are handed on. Either way, one
/// sealed for another event, field or subject is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedFields {
    /// In the form that names what each is bound to (`elc1.`, see [`crate::cipher::name`]): for
    /// a reader that keeps them, such as a projection with personal columns, whose tables are
    /// read without the event.
    Named,
    /// As the event carries them (the short `elc2.` form): for a reader that keeps no personal
    /// data, which then pays neither for naming them nor for carrying the longer form on.
    AsCarried,
}

/// `schema` with each personal field accepting its sealed form too: its own schema, or a sealed
/// value (`elc1.` or `elc2.`, and base64url).
fn sealable(schema: &Value) -> Value {
    let mut schema = schema.clone();
    make_sealable(&mut schema);
    schema
}

fn make_sealable(schema: &mut Value) {
    if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        for field in properties.values_mut() {
            let personal = field
                .get(classification::KEYWORD)
                .and_then(classification::Classification::parse)
                .is_some_and(|c| c.is_personal());
            if personal {
                let sealed = serde_json::json!({"type": "string", "pattern": SEALED_PATTERN});
                *field = serde_json::json!({"anyOf": [field.clone(), sealed]});
            } else {
                make_sealable(field);
            }
        }
    }
    if let Some(items) = schema.get_mut("items").filter(|items| items.is_object()) {
        make_sealable(items);
    }
}

/// A sealed value as it is stored (see [`crate::cipher`]).
const SEALED_PATTERN: &str = "^elc[12]\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$";

/// Where a type's schema of one version lives, relative to the registry folder.
pub fn schema_path(domain: &str, type_name: &str, version: u32) -> String {
    format!("{domain}/{type_name}.v{version}.schema.json")
}

/// Where the upcaster from `version` to the next lives, relative to the registry folder.
pub fn upcaster_path(domain: &str, type_name: &str, version: u32) -> String {
    format!("{domain}/{type_name}.v{version}-to-v{}.upcast.json", version + 1)
}

fn read_tree(root: &Path, dir: &Path, files: &mut BTreeMap<String, String>) -> Result<(), (PathBuf, std::io::Error)> {
    let entries = std::fs::read_dir(dir).map_err(|e| (dir.to_path_buf(), e))?;
    for entry in entries {
        let path = entry.map_err(|e| (dir.to_path_buf(), e))?.path();
        if path.is_dir() {
            read_tree(root, &path, files)?;
        } else {
            let text = std::fs::read_to_string(&path).map_err(|e| (path.clone(), e))?;
            let relative = path.strip_prefix(root).expect("below the root").to_string_lossy().replace('\\', "/");
            files.insert(relative, text);
        }
    }
    Ok(())
}

/// Parses a schema file and checks what eventline relies on: an object with the key field.
fn load_schema(text: &str, key: &str) -> Result<Value, String> {
    let schema: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    if schema.get("type") != Some(&Value::from("object")) {
        return Err("the schema must describe an object (\"type\": \"object\")".into());
    }
    let requires_key = schema["required"].as_array().is_some_and(|r| r.iter().any(|f| f == key));
    let key_is_string = schema["properties"][key]["type"] == "string";
    if !requires_key || !key_is_string {
        return Err(format!("the schema must require the key field `{key}` as a string"));
    }
    Ok(schema)
}

fn data_error(
    error: &jsonschema::ValidationError<'_>,
    contract: &TypeContract,
    schema: &SchemaVersion,
) -> ContractError {
    let version = schema.version;
    let pointer = format!("/data{}", error.instance_path().as_str());
    // A personal field's value is named by its type only: refusals reach logs, dead letters and
    // answers, where personal data does not belong.
    let personal = classification::at(&schema.schema, error.instance_path().as_str()).is_some_and(|c| c.is_personal());
    let found = if personal {
        format!("{} (personal, not shown)", envelope::json_type(error.instance()))
    } else {
        describe(error.instance())
    };
    let invalid = |reason: String| ContractError::InvalidValue { pointer: pointer.clone(), reason };
    match error.kind() {
        ValidationErrorKind::Required { property } => {
            ContractError::MissingField { pointer: format!("{pointer}/{}", property.as_str().unwrap_or_default()) }
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => ContractError::UnknownField {
            pointer: format!("{pointer}/{}", unexpected.first().map(String::as_str).unwrap_or_default()),
            event_type: contract.event_type.clone(),
            version,
        },
        ValidationErrorKind::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(t) => article(&t.to_string()),
                TypeKind::Multiple(types) => {
                    format!("one of {}", types.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", "))
                }
            };
            ContractError::WrongType { pointer: pointer.clone(), expected, found }
        }
        ValidationErrorKind::ExclusiveMinimum { limit } => {
            invalid(format!("must be greater than {limit}, found {found}"))
        }
        ValidationErrorKind::Minimum { limit } => invalid(format!("must be at least {limit}, found {found}")),
        ValidationErrorKind::ExclusiveMaximum { limit } => invalid(format!("must be less than {limit}, found {found}")),
        ValidationErrorKind::Maximum { limit } => invalid(format!("must be at most {limit}, found {found}")),
        ValidationErrorKind::MinLength { limit: 1 } => invalid("must not be empty".into()),
        ValidationErrorKind::MinLength { limit } => invalid(format!("must be at least {limit} characters long")),
        ValidationErrorKind::MaxLength { limit } => invalid(format!("must be at most {limit} characters long")),
        ValidationErrorKind::Pattern { pattern } => invalid(format!("must match {pattern}, found {found}")),
        ValidationErrorKind::Enum { options } => {
            let options: Vec<String> = options
                .as_array()
                .into_iter()
                .flatten()
                .map(|o| o.as_str().map_or(o.to_string(), String::from))
                .collect();
            invalid(format!("must be one of {}, found {found}", options.join(", ")))
        }
        _ if personal => {
            let rule = error.schema_path().as_str().rsplit('/').next().unwrap_or_default().to_string();
            invalid(format!("breaks the schema's `{rule}` rule (the value is personal, not shown)"))
        }
        _ => invalid(error.to_string()),
    }
}

fn article(type_name: &str) -> String {
    match type_name {
        "integer" | "object" | "array" => format!("an {type_name}"),
        "null" => "null".into(),
        other => format!("a {other}"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{at, at_mut};

    #[test]
    fn a_pointer_finds_what_serde_json_finds() {
        let mut data = json!({"owner": "Ada", "a/b": {"c~d": [1, {"e": true}]}, "n": null});
        for pointer in
            ["/owner", "/a~1b", "/a~1b/c~0d", "/a~1b/c~0d/1/e", "/n", "/missing", "/owner/x", "/a~1b/c~0d/9", ""]
        {
            assert_eq!(at(&data, pointer), data.pointer(pointer).filter(|_| !pointer.is_empty()), "{pointer}");
        }
        *at_mut(&mut data, "/a~1b/c~0d/1/e").unwrap() = json!(false);
        assert_eq!(data["a/b"]["c~d"][1]["e"], false);
        assert!(at_mut(&mut data, "/a~1b/x").is_none());
    }

    #[test]
    fn members_are_found_in_small_and_large_objects_alike() {
        for members in [1, super::SCANNED_MEMBERS, super::SCANNED_MEMBERS + 1, 40] {
            let mut data = serde_json::Value::Object((0..members).map(|i| (format!("m{i}"), json!(i))).collect());
            let last = format!("/m{}", members - 1);
            assert_eq!(at(&data, &last), Some(&json!(members - 1)), "{members} members");
            assert_eq!(at(&data, "/m"), None, "{members} members");
            *at_mut(&mut data, &last).unwrap() = json!("changed");
            assert_eq!(data[format!("m{}", members - 1)], "changed", "{members} members");
        }
    }
}
