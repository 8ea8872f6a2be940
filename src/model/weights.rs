//! Reading checkpoints in the Hub's layouts and handing their tensors to the model.
//!
//! Supported: `model.safetensors` (memory-mapped), `pytorch_model.bin` (PyTorch pickle) and the
//! sharded `*.index.json` variants of both. Tensor names are accepted with or without the
//! family's prefix (`albert.`, `bert.`, …, see [`Family::canonical_name`]); tensors of other
//! heads (`predictions.*`, `cls.*`, `lm_head.*`, …) are ignored.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::{Init, VarBuilder, VarMap};

use super::family::Family;

/// Weight files in the order the Hub's loaders prefer them.
pub const WEIGHT_FILES: &[&str] = &[
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
];

/// The weight files of a model folder: the first layout of [`WEIGHT_FILES`] present.
pub fn find_weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    for name in WEIGHT_FILES {
        let path = dir.join(name);
        if !path.is_file() {
            continue;
        }
        if name.ends_with(".index.json") {
            return shards_of_index(&path);
        }
        return Ok(vec![path]);
    }
    bail!(
        "no weights in {}: expected one of {}",
        dir.display(),
        WEIGHT_FILES.join(", ")
    )
}

/// The shard file names of a sharded checkpoint's `*.index.json` (its `weight_map` values),
/// sorted and without repeats.
pub fn shard_names(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index)
        .with_context(|| format!("cannot read {}", index.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", index.display()))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .with_context(|| format!("{}: missing object field `weight_map`", index.display()))?;
    let mut files = BTreeSet::new();
    for (tensor, file) in map {
        let file = file.as_str().with_context(|| {
            format!(
                "{}: field `weight_map.{tensor}` is not a file name",
                index.display()
            )
        })?;
        files.insert(file.to_string());
    }
    Ok(files.into_iter().collect())
}

/// The shard files of a sharded checkpoint, each checked to exist.
fn shards_of_index(index: &Path) -> Result<Vec<PathBuf>> {
    let dir = index.parent().unwrap_or(Path::new("."));
    let files: Vec<PathBuf> = shard_names(index)?
        .into_iter()
        .map(|f| dir.join(f))
        .collect();
    for f in &files {
        if !f.is_file() {
            bail!(
                "{} names shard {}, which is missing",
                index.display(),
                f.display()
            );
        }
    }
    Ok(files)
}

/// All tensors of a checkpoint under their canonical names, with the file each came from.
/// Refuses a floating-point tensor holding NaN or infinity: a model with such a weight can
/// only produce meaningless numbers.
pub fn check_finite(name: &str, tensor: &Tensor, file: &Path) -> Result<()> {
    if !tensor.dtype().is_float() || tensor.elem_count() == 0 {
        return Ok(());
    }
    let t = tensor.to_dtype(DType::F32)?;
    let sum = t.abs()?.sum_all()?.to_scalar::<f32>()?;
    if sum.is_finite() {
        return Ok(());
    }
    let values = t.flatten_all()?.to_vec1::<f32>()?;
    let (nan, inf) = values.iter().fold((0usize, 0usize), |(n, i), v| {
        (
            n + usize::from(v.is_nan()),
            i + usize::from(v.is_infinite()),
        )
    });
    if nan + inf == 0 {
        return Ok(()); // finite values whose sum overflows
    }
    bail!(
        "{}: tensor `{name}` holds {nan} NaN and {inf} infinite value(s) of {}: the weights are damaged (a diverged training run, or a broken conversion); use another checkpoint",
        file.display(),
        values.len()
    )
}

pub struct Checkpoint {
    pub family: Family,
    pub files: Vec<PathBuf>,
    tensors: HashMap<String, (Tensor, usize)>,
    /// Tensors left in their files (see [`Checkpoint::load_deferring`]).
    deferred: HashMap<String, Deferred>,
    /// Tensors present in the files that the multiple-choice model does not use.
    pub ignored: Vec<String>,
}

/// A 2-D tensor left in its safetensors file when the model loads, read later a block of rows
/// at a time and converted straight into a packed form (the bf16 linears), so that no f32 copy
/// of the whole model is ever held.
#[derive(Debug, Clone)]
pub struct Deferred {
    pub file: PathBuf,
    /// Where its data starts in the file.
    offset: u64,
    dtype: DType,
    pub shape: Vec<usize>,
}

impl Deferred {
    /// Its file, opened for [`Deferred::read_rows`] (once per tensor, not per block of rows).
    pub fn open(&self) -> Result<std::fs::File> {
        std::fs::File::open(&self.file)
            .with_context(|| format!("cannot reopen {}", self.file.display()))
    }

    /// Rows `first..first + dst.len() / cols` as f32 into `dst`, from `file` (its
    /// [`Deferred::open`]); an error naming the tensor if a value is NaN or infinite (as
    /// [`check_finite`] does for loaded tensors).
    pub fn read_rows(
        &self,
        file: &std::fs::File,
        name: &str,
        first: usize,
        dst: &mut [f32],
    ) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let cols = self.shape.get(1).copied().unwrap_or(1).max(1);
        let size = self.dtype.size_in_bytes();
        let mut bytes = vec![0u8; dst.len() * size];
        file.read_exact_at(&mut bytes, self.offset + (first * cols * size) as u64)
            .with_context(|| {
                format!(
                    "cannot read tensor `{name}` from {}: the file may be truncated; delete it and download it again",
                    self.file.display()
                )
            })?;
        match self.dtype {
            DType::F32 => {
                for (d, b) in dst.iter_mut().zip(bytes.chunks_exact(4)) {
                    *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            DType::F16 => {
                for (d, b) in dst.iter_mut().zip(bytes.chunks_exact(2)) {
                    *d = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
            DType::BF16 => {
                for (d, b) in dst.iter_mut().zip(bytes.chunks_exact(2)) {
                    *d = half::bf16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
            other => bail!("tensor `{name}`: cannot defer a {other:?} tensor"),
        }
        let bad = dst.iter().filter(|v| !v.is_finite()).count();
        if bad > 0 {
            bail!(
                "{}: tensor `{name}` holds {bad} NaN or infinite value(s): the weights are damaged (a diverged training run, or a broken conversion); use another checkpoint",
                self.file.display()
            );
        }
        Ok(())
    }
}

/// Where a 2-D tensor lies in a safetensors file: (dtype, shape, offset of its data).
type Located = (DType, Vec<usize>, u64);

/// The tensors of a safetensors file, from its header, by file name: where each lies, or `None`
/// for one that cannot be deferred (not 2-D, or not f32/f16/bf16).
fn safetensors_index(file: &Path) -> Result<Vec<(String, Option<Located>)>> {
    use std::io::Read;
    let mut f =
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .with_context(|| format!("{}: not a safetensors file (no header)", file.display()))?;
    let n = u64::from_le_bytes(len);
    if n > 100_000_000 {
        bail!(
            "{}: not a safetensors file (header of {n} bytes)",
            file.display()
        );
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)
        .with_context(|| format!("{}: truncated safetensors header", file.display()))?;
    let json: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
        .with_context(|| format!("{}: the safetensors header is not JSON", file.display()))?;
    let mut out = Vec::new();
    for (name, v) in json {
        if name == "__metadata__" {
            continue;
        }
        let dtype = match v["dtype"].as_str() {
            Some("F32") => Some(DType::F32),
            Some("F16") => Some(DType::F16),
            Some("BF16") => Some(DType::BF16),
            _ => None,
        };
        let shape: Option<Vec<usize>> = v["shape"].as_array().map(|a| {
            a.iter()
                .filter_map(|d| d.as_u64().map(|d| d as usize))
                .collect()
        });
        let start = v["data_offsets"][0].as_u64();
        let entry = match (dtype, shape, start) {
            (Some(d), Some(s), Some(start)) if s.len() == 2 => Some((d, s, 8 + n + start)),
            _ => None,
        };
        out.push((name, entry));
    }
    Ok(out)
}

impl Checkpoint {
    pub fn load(files: &[PathBuf], family: Family) -> Result<Self> {
        Self::load_deferring(files, family, &|_| false)
    }

    /// As [`Checkpoint::load`], but the 2-D f32/f16/bf16 tensors of safetensors files whose
    /// canonical name `defer` picks are left in their files ([`Checkpoint::deferred`]): the
    /// model gets an empty placeholder for each, to be replaced by a packed form.
    pub fn load_deferring(
        files: &[PathBuf],
        family: Family,
        defer: &dyn Fn(&str) -> bool,
    ) -> Result<Self> {
        let mut tensors = HashMap::new();
        let mut deferred = HashMap::new();
        let mut ignored = Vec::new();
        for (idx, file) in files.iter().enumerate() {
            let mut skip = BTreeSet::new();
            if file.extension().is_some_and(|e| e == "safetensors") {
                for (name, entry) in safetensors_index(file)? {
                    let (Some(canon), Some((dtype, shape, offset))) =
                        (family.canonical_name(&name), entry)
                    else {
                        continue;
                    };
                    if !defer(&canon) {
                        continue;
                    }
                    let d = Deferred {
                        file: file.clone(),
                        offset,
                        dtype,
                        shape,
                    };
                    if deferred.insert(canon.clone(), d).is_some() {
                        bail!(
                            "tensor `{canon}` appears twice (last in {})",
                            file.display()
                        );
                    }
                    skip.insert(name);
                }
            }
            for (name, tensor) in read_tensors(file, &skip)? {
                match family.canonical_name(&name) {
                    Some(canon) => {
                        check_finite(&name, &tensor, file)?;
                        if let Some((_, prev)) = tensors.insert(canon.clone(), (tensor, idx)) {
                            bail!(
                                "tensor `{canon}` appears twice: in {} and in {}",
                                files[prev].display(),
                                file.display()
                            );
                        }
                    }
                    None => ignored.push(name),
                }
            }
        }
        ignored.sort();
        Ok(Self {
            family,
            files: files.to_vec(),
            tensors,
            deferred,
            ignored,
        })
    }

    /// The tensors left in their files, by canonical name.
    pub fn deferred(&self) -> &HashMap<String, Deferred> {
        &self.deferred
    }

    pub fn get(&self, name: &str) -> Option<(&Tensor, &Path)> {
        self.tensors
            .get(name)
            .map(|(t, i)| (t, self.files[*i].as_path()))
    }

    /// Replaces (or adds) tensor `name` (canonical), e.g. with a trained head's; it counts as
    /// coming from the first file.
    pub fn set(&mut self, name: &str, tensor: Tensor) {
        self.deferred.remove(name);
        self.tensors.insert(name.to_string(), (tensor, 0));
    }

    /// Keeps encoder layers `map[j]` as layers `j` and drops the others, for a student with
    /// fewer layers initialised from its teacher's (BERT-family `….layer.{i}.…` names). Returns
    /// how many tensors were renamed; an error if the checkpoint has no such layers.
    pub fn keep_layers(&mut self, map: &[usize]) -> Result<usize> {
        if !self.deferred.is_empty() {
            bail!("keep_layers: the checkpoint was loaded with deferred tensors (inference only)");
        }
        let layer_of = |name: &str| -> Option<(usize, String, String)> {
            let parts: Vec<&str> = name.split('.').collect();
            let k = parts.iter().position(|p| *p == "layer")?;
            let i: usize = parts.get(k + 1)?.parse().ok()?;
            Some((i, parts[..k].join("."), parts[k + 2..].join(".")))
        };
        let old = std::mem::take(&mut self.tensors);
        let mut renamed = 0;
        let mut present = BTreeSet::new();
        for (name, entry) in old {
            match layer_of(&name) {
                Some((i, head, tail)) => {
                    present.insert(i);
                    for (j, _) in map.iter().enumerate().filter(|(_, &src)| src == i) {
                        self.tensors
                            .insert(format!("{head}.layer.{j}.{tail}"), entry.clone());
                        renamed += 1;
                    }
                }
                None => {
                    self.tensors.insert(name, entry);
                }
            }
        }
        if let Some(missing) = map.iter().find(|i| !present.contains(i)) {
            bail!(
                "{}: no encoder layer {missing} to initialise the student from (layers found: {})",
                self.describe(),
                if present.is_empty() {
                    "none".to_string()
                } else {
                    format!("0-{}", present.iter().max().unwrap())
                }
            );
        }
        Ok(renamed)
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.tensors.keys().chain(self.deferred.keys())
    }

    pub fn describe(&self) -> String {
        match self.files.as_slice() {
            [one] => one.display().to_string(),
            many => format!(
                "{} shards in {}",
                many.len(),
                many[0].parent().unwrap_or(Path::new(".")).display()
            ),
        }
    }
}

/// The tensors of `file` but those named in `skip` (file names, not canonical).
fn read_tensors(file: &Path, skip: &BTreeSet<String>) -> Result<Vec<(String, Tensor)>> {
    let is_safetensors = file.extension().is_some_and(|e| e == "safetensors");
    let loaded = if is_safetensors {
        // SAFETY: the file is mapped read-only; we only read it while loading.
        let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(file) };
        st.and_then(|st| {
            st.tensors()
                .into_iter()
                .filter(|(name, _)| !skip.contains(name))
                .map(|(name, _)| st.load(&name, &Device::Cpu).map(|t| (name, t)))
                .collect::<candle_core::Result<Vec<_>>>()
        })
    } else {
        candle_core::pickle::read_all(file)
    };
    loaded.map_err(|e| {
        anyhow::anyhow!(
            "cannot read weights from {}: {e}. The file may be truncated or corrupt: delete it and download it again",
            file.display()
        )
    })
}

/// What loading a model found: head tensors that had to be initialised, tensors left unused.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub initialised: Vec<String>,
    pub unused: Vec<String>,
    pub ignored: Vec<String>,
}

/// A candle backend over a [`Checkpoint`]. Shapes are checked against the model's; missing head
/// tensors are initialised as transformers does. With a [`VarMap`] every tensor becomes a
/// trainable `Var` registered under its name.
struct CheckpointBackend {
    ckpt: Arc<Checkpoint>,
    varmap: Option<VarMap>,
    requested: Arc<Mutex<BTreeSet<String>>>,
    initialised: Arc<Mutex<Vec<String>>>,
}

impl CheckpointBackend {
    fn register(&self, name: &str, tensor: Tensor) -> candle_core::Result<Tensor> {
        match &self.varmap {
            None => Ok(tensor),
            Some(vm) => {
                let var = Var::from_tensor(&tensor)?;
                let t = var.as_tensor().clone();
                vm.data().lock().unwrap().insert(name.to_string(), var);
                Ok(t)
            }
        }
    }
}

impl candle_nn::var_builder::SimpleBackend for CheckpointBackend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.requested.lock().unwrap().insert(name.to_string());
        if let Some(vm) = &self.varmap {
            if let Some(var) = vm.data().lock().unwrap().get(name) {
                return Ok(var.as_tensor().clone());
            }
        }
        if let Some(d) = self.ckpt.deferred.get(name) {
            if d.shape != s.dims() {
                candle_core::bail!(
                    "shape mismatch for tensor `{name}` in {}: the checkpoint has {:?}, config.json implies {:?}",
                    d.file.display(),
                    d.shape,
                    s.dims()
                );
            }
            // A placeholder: the packed form replaces it once the model is built.
            return Tensor::zeros(0, dtype, dev);
        }
        match self.ckpt.get(name) {
            Some((t, file)) => {
                if t.dims() != s.dims() {
                    candle_core::bail!(
                        "shape mismatch for tensor `{name}` in {}: the checkpoint has {:?}, config.json implies {:?}",
                        file.display(),
                        t.dims(),
                        s.dims()
                    );
                }
                let t = t.to_dtype(dtype)?.to_device(dev)?;
                self.register(name, t)
            }
            None if self.ckpt.family.is_head_tensor(name) => {
                self.initialised.lock().unwrap().push(name.to_string());
                let t = init.var(s, dtype, dev)?.as_tensor().clone();
                self.register(name, t)
            }
            None => candle_core::bail!(
                "tensor `{name}` is missing from {}: is this a {} checkpoint matching its config.json?",
                self.ckpt.describe(),
                self.ckpt.family.model_type()
            ),
        }
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        match self.ckpt.get(name) {
            Some((t, _)) => t.to_dtype(dtype)?.to_device(dev),
            None => candle_core::bail!("tensor `{name}` is missing from {}", self.ckpt.describe()),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.ckpt.get(name).is_some() || self.ckpt.deferred.contains_key(name)
    }
}

/// Builds a model from a checkpoint through a [`VarBuilder`] and reports what was initialised.
pub fn build_from_checkpoint<M>(
    ckpt: Checkpoint,
    dtype: DType,
    device: &Device,
    varmap: Option<&VarMap>,
    build: impl FnOnce(VarBuilder) -> candle_core::Result<M>,
) -> Result<(M, LoadReport)> {
    let ckpt = Arc::new(ckpt);
    let requested = Arc::new(Mutex::new(BTreeSet::new()));
    let initialised = Arc::new(Mutex::new(Vec::new()));
    let backend = CheckpointBackend {
        ckpt: ckpt.clone(),
        varmap: varmap.cloned(),
        requested: requested.clone(),
        initialised: initialised.clone(),
    };
    let vb = VarBuilder::from_backend(Box::new(backend), dtype, device.clone());
    let model = build(vb).map_err(|e| anyhow::anyhow!("{e}"))?;
    let requested = requested.lock().unwrap();
    let mut unused: Vec<String> = ckpt
        .names()
        .filter(|n| !requested.contains(*n))
        .cloned()
        .collect();
    unused.sort();
    let report = LoadReport {
        initialised: initialised.lock().unwrap().clone(),
        unused,
        ignored: ckpt.ignored.clone(),
    };
    Ok((model, report))
}
