//! The encoder's inference path on the CPU in f32: the same arithmetic as [`super::encoder`]
//! (transformers' `AlbertTransformer`, eager attention), written against raw buffers so that
//!
//! - the weights are read in place from the loaded tensors, never copied again or transposed:
//!   each linear is one GEMM over all tokens with `W` read through transposed strides;
//! - bias adds and the residual are fused into the GEMMs (the output buffer starts as
//!   `residual + bias` and the GEMM accumulates into it), LayerNorm and the activation run in
//!   place;
//! - in int8 layers, the GEMM epilogue also runs LayerNorm or the activation on each finished
//!   chunk of output rows and quantises them for the next GEMM while they are in cache
//!   ([`quant::gemm_bias_post`]), and Q, K and V share one quantisation of their input;
//! - Q, K and V land side by side in one (tokens, 3·hidden) buffer that attention reads in place
//!   with strides: no head split or merge copies;
//! - attention runs per (sequence, head, block of queries) on rayon with a scratch block of
//!   scores, never materialising (batch, heads, len, len), and writes its context straight into
//!   the head's columns;
//! - four buffers are allocated per batch and reused by every layer;
//! - when only the [CLS] state is needed (the pooler and the multiple-choice head read nothing
//!   else):
//!   - padding is dropped: the sequences are packed row after row, so the GEMMs run on real
//!     tokens only and attention runs per sequence over its own length. The reference gives
//!     masked keys a weight of exactly 0 (`exp(finfo.min - max)` is 0 in f32) and padded rows
//!     reach [CLS] only as masked keys, so [CLS] is the same;
//!   - the last layer computes keys and values for every token but queries, attention, the
//!     output projection and the feed-forward for the [CLS] rows alone: the other rows of the
//!     last layer's output are never read.
//!
//! Training, other devices and other dtypes take candle's differentiable ops in
//! [`super::encoder`]; a unit test holds the two paths within 2e-5 of each other and the parity tests
//! hold both to transformers at 1e-4.

use candle_core::{CpuStorage, Layout, Result, Storage, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use super::activation::Activation;
use super::attention512;
use super::attention_bf16;
use super::bf16::{self, Bf16Linear, Bf16Rows};
use super::kernels::{self, SharedMut};
use super::quant::{self, QuantLinear};

/// A layer's linear weights quantised to int8 (`--dtype int8`), with the kernel that runs them.
pub struct QuantLayer {
    pub kernel: quant::Kernel,
    pub query: QuantLinear,
    pub key: QuantLinear,
    pub value: QuantLinear,
    pub dense: QuantLinear,
    pub ffn: QuantLinear,
    pub ffn_output: QuantLinear,
}

impl QuantLayer {
    /// The six linears (calibration).
    pub fn linears(&self) -> [&QuantLinear; 6] {
        [
            &self.query,
            &self.key,
            &self.value,
            &self.dense,
            &self.ffn,
            &self.ffn_output,
        ]
    }
}

/// A layer's linear weights in bf16 (`--dtype bf16`), with the kernel that runs them.
pub struct Bf16Layer {
    pub kernel: bf16::Kernel,
    pub query: Bf16Linear,
    pub key: Bf16Linear,
    pub value: Bf16Linear,
    pub dense: Bf16Linear,
    pub ffn: Bf16Linear,
    pub ffn_output: Bf16Linear,
}

/// Queries per attention work item: a 64 × len block of scores stays in L2.
const QUERY_BLOCK: usize = 64;

/// One layer's tensors, in the order [`LayerSlices`] reads them.
pub struct LayerTensors<'a> {
    pub query: (&'a Tensor, &'a Tensor),
    pub key: (&'a Tensor, &'a Tensor),
    pub value: (&'a Tensor, &'a Tensor),
    pub dense: (&'a Tensor, &'a Tensor),
    pub attention_norm: (&'a Tensor, &'a Tensor),
    pub ffn: (&'a Tensor, &'a Tensor),
    pub ffn_output: (&'a Tensor, &'a Tensor),
    pub output_norm: (&'a Tensor, &'a Tensor),
    pub activation: Activation,
    pub eps: f32,
    /// The int8 weights, when the model was quantised: the linears then run in int8.
    pub quant: Option<&'a QuantLayer>,
    /// The bf16 weights, when the model was packed in bf16: the linears then run in bf16.
    pub bf16: Option<&'a Bf16Layer>,
}

impl LayerTensors<'_> {
    fn all(&self) -> [&Tensor; 16] {
        [
            self.query.0,
            self.query.1,
            self.key.0,
            self.key.1,
            self.value.0,
            self.value.1,
            self.dense.0,
            self.dense.1,
            self.attention_norm.0,
            self.attention_norm.1,
            self.ffn.0,
            self.ffn.1,
            self.ffn_output.0,
            self.ffn_output.1,
            self.output_norm.0,
            self.output_norm.1,
        ]
    }
}

/// Whether `t` can take this path: f32 on the CPU, not tracked for gradients.
pub fn eligible(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == candle_core::DType::F32 && !t.track_op()
}

/// The f32 data of a contiguous CPU tensor whose storage guard is `guard`.
fn f32_data<'g>(storage: &'g Storage, layout: &Layout) -> Result<&'g [f32]> {
    let (Storage::Cpu(CpuStorage::F32(data)), Some((start, end))) =
        (storage, layout.contiguous_offsets())
    else {
        candle_core::bail!("cpu encoder: expects contiguous f32 tensors on the CPU");
    };
    Ok(&data[start..end])
}

/// A linear layer's weight: `nn.Linear`'s (out, in) f32 matrix, row-major, or its int8 or bf16
/// packed form when the model was quantised or packed (the GEMM then runs in that form, and
/// the f32 matrix is empty: the packed copy is the only one kept).
#[derive(Clone, Copy)]
struct Weight<'a> {
    f32: &'a [f32],
    int8: Option<(&'a QuantLinear, quant::Kernel)>,
    bf16: Option<(&'a Bf16Linear, bf16::Kernel)>,
}

impl Weight<'_> {
    /// The number of values of the (out, in) matrix, whichever form holds it.
    fn len(&self) -> usize {
        match (self.int8, self.bf16) {
            (Some((q, _)), _) => q.n * q.k,
            (_, Some((b, _))) => b.n * b.k,
            _ => self.f32.len(),
        }
    }
}

/// A layer's weights as slices: (weight, bias) per linear, (weight, bias) per LayerNorm.
struct LayerSlices<'a> {
    q: (Weight<'a>, &'a [f32]),
    k: (Weight<'a>, &'a [f32]),
    v: (Weight<'a>, &'a [f32]),
    dense: (Weight<'a>, &'a [f32]),
    norm1: (&'a [f32], &'a [f32]),
    ffn: (Weight<'a>, &'a [f32]),
    ffn_out: (Weight<'a>, &'a [f32]),
    norm2: (&'a [f32], &'a [f32]),
}

/// Shapes of one batch.
#[derive(Clone, Copy)]
struct Dims {
    hidden: usize,
    inter: usize,
    heads: usize,
    head_dim: usize,
}

/// Where each sequence's rows lie in the working buffers: `start[b]..start[b] + len[b]`.
struct Rows {
    start: Vec<usize>,
    len: Vec<usize>,
    /// Offset of sequence b's key mask in the (batch × padded len) mask.
    mask: Vec<usize>,
}

impl Rows {
    fn total(&self) -> usize {
        self.len.iter().sum()
    }

    /// Every row kept, as laid out in the padded input.
    fn padded(batch: usize, len: usize) -> Self {
        Self {
            start: (0..batch).map(|b| b * len).collect(),
            len: vec![len; batch],
            mask: (0..batch).map(|b| b * len).collect(),
        }
    }

    /// Rows up to each sequence's last unmasked key, packed one sequence after another. Keys
    /// after it have weight exactly 0 in the reference, and their rows reach [CLS] only as
    /// such keys. A sequence with every key masked is kept whole (the reference then spreads
    /// its attention evenly over all of them).
    fn packed(mask: &[f32], batch: usize, len: usize) -> Self {
        let mut rows = Self {
            start: Vec::with_capacity(batch),
            len: Vec::with_capacity(batch),
            mask: (0..batch).map(|b| b * len).collect(),
        };
        let mut next = 0;
        for m in mask.chunks_exact(len.max(1)).take(batch) {
            let kept = match m.iter().rposition(|&v| v > MASKED) {
                Some(last) => last + 1,
                None => len,
            };
            rows.start.push(next);
            rows.len.push(kept);
            next += kept;
        }
        rows
    }

    /// Copies each sequence's rows of `x` (laid out as `from`) into a buffer laid out as `self`.
    fn gather(&self, x: &[f32], from: &Rows, h: usize) -> Vec<f32> {
        let mut out = vec![0f32; self.total() * h];
        for b in 0..self.len.len() {
            let (src, dst, n) = (from.start[b] * h, self.start[b] * h, self.len[b] * h);
            out[dst..dst + n].copy_from_slice(&x[src..src + n]);
        }
        out
    }
}

/// Additive mask values at or below this are the reference's "masked" (`finfo(f32).min`, or
/// anything of that order): their keys get exactly zero weight.
const MASKED: f32 = -1e30;

/// Runs `layers` (in order; shared layers appear repeatedly) over `hidden` (batch, len, H) with
/// the additive key mask (batch, 1, 1, len). Returns (batch, len, H), or (batch, H) holding only
/// the [CLS] rows when `cls_only`.
pub fn forward(
    layers: &[LayerTensors],
    hidden: &Tensor,
    mask: &Tensor,
    heads: usize,
    cls_only: bool,
) -> Result<Tensor> {
    let (batch, len, h) = hidden.dims3()?;
    if heads == 0 || h % heads != 0 {
        candle_core::bail!("cpu encoder: hidden size {h} is not a multiple of {heads} heads");
    }
    let padded_x = hidden.flatten_all()?.to_vec1::<f32>()?;
    let mask = mask.flatten_all()?.to_vec1::<f32>()?;
    if mask.len() != batch * len {
        candle_core::bail!(
            "cpu encoder: the mask has {} values, expected {}",
            mask.len(),
            batch * len
        );
    }
    let (Some(first), true) = (layers.first(), batch * len > 0) else {
        let t = Tensor::from_vec(padded_x, (batch, len, h), hidden.device())?;
        return if cls_only {
            t.narrow(1, 0, 1.min(len))?.squeeze(1)
        } else {
            Ok(t)
        };
    };
    let dims = Dims {
        hidden: h,
        inter: first.ffn.1.dim(0)?,
        heads,
        head_dim: h / heads,
    };
    let padded = Rows::padded(batch, len);
    let (rows, mut x) = if cls_only {
        let packed = Rows::packed(&mask, batch, len);
        let x = packed.gather(&padded_x, &padded, h);
        (packed, x)
    } else {
        (padded, padded_x)
    };
    let n = rows.total();
    let mut bufs = Buffers {
        qkv: vec![0f32; n * 3 * h],
        ctx: vec![0f32; n * h],
        att: vec![0f32; n * h],
        ff: vec![0f32; n * dims.inter],
    };
    for (i, layer) in layers.iter().enumerate() {
        let guards: Vec<_> = layer.all().iter().map(|t| t.storage_and_layout()).collect();
        let s = guards
            .iter()
            .map(|(g, l)| f32_data(g, l))
            .collect::<Result<Vec<_>>>()?;
        let (q, b) = (layer.quant, layer.bf16);
        let w = LayerSlices {
            q: (weight(s[0], q, |q| &q.query, b, |b| &b.query), s[1]),
            k: (weight(s[2], q, |q| &q.key, b, |b| &b.key), s[3]),
            v: (weight(s[4], q, |q| &q.value, b, |b| &b.value), s[5]),
            dense: (weight(s[6], q, |q| &q.dense, b, |b| &b.dense), s[7]),
            norm1: (s[8], s[9]),
            ffn: (weight(s[10], q, |q| &q.ffn, b, |b| &b.ffn), s[11]),
            ffn_out: (
                weight(s[12], q, |q| &q.ffn_output, b, |b| &b.ffn_output),
                s[13],
            ),
            norm2: (s[14], s[15]),
        };
        check_shapes(&w, &dims)?;
        let last = i + 1 == layers.len();
        if cls_only && last {
            x = layer_cls(&w, layer, &x, &mask, &rows, &dims, &mut bufs)?;
        } else {
            layer_full(&w, layer, &mut x, &mask, &rows, &dims, &mut bufs)?;
        }
    }
    if cls_only {
        // `layer_cls` returned the [CLS] rows alone.
        Tensor::from_vec(x, (batch, h), hidden.device())
    } else {
        Tensor::from_vec(x, (batch, len, h), hidden.device())
    }
}

fn weight<'a>(
    f32: &'a [f32],
    quant: Option<&'a QuantLayer>,
    pick: fn(&QuantLayer) -> &QuantLinear,
    packed: Option<&'a Bf16Layer>,
    pick_bf16: fn(&Bf16Layer) -> &Bf16Linear,
) -> Weight<'a> {
    Weight {
        f32,
        int8: quant.map(|q| (pick(q), q.kernel)),
        bf16: packed.map(|b| (pick_bf16(b), b.kernel)),
    }
}

/// (weight values, bias values) of a linear, for the shape check.
fn lin(l: (Weight, &[f32])) -> (usize, usize) {
    (l.0.len(), l.1.len())
}

fn check_shapes(w: &LayerSlices, d: &Dims) -> Result<()> {
    let (h, i) = (d.hidden, d.inter);
    let expect = [
        ("query", lin(w.q), h * h, h),
        ("key", lin(w.k), h * h, h),
        ("value", lin(w.v), h * h, h),
        ("dense", lin(w.dense), h * h, h),
        (
            "attention LayerNorm",
            (w.norm1.0.len(), w.norm1.1.len()),
            h,
            h,
        ),
        ("ffn", lin(w.ffn), i * h, i),
        ("ffn_output", lin(w.ffn_out), h * i, h),
        (
            "full_layer_layer_norm",
            (w.norm2.0.len(), w.norm2.1.len()),
            h,
            h,
        ),
    ];
    for (name, (a, b), na, nb) in expect {
        if a != na || b != nb {
            candle_core::bail!("cpu encoder: {name} has {a} + {b} values, expected {na} + {nb}");
        }
    }
    Ok(())
}

struct Buffers {
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    att: Vec<f32>,
    ff: Vec<f32>,
}

fn threads() -> Parallelism {
    match candle_core::utils::get_num_threads() {
        0 | 1 => Parallelism::None,
        n => Parallelism::Rayon(n),
    }
}

/// A row-major matrix view: `rows` rows of `cols` values, `stride` apart.
#[derive(Clone, Copy)]
struct View {
    rows: usize,
    cols: usize,
    stride: usize,
}

impl View {
    fn dense(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            stride: cols,
        }
    }

    /// The smallest slice length that holds the view.
    fn extent(&self) -> usize {
        if self.rows == 0 {
            0
        } else {
            (self.rows - 1) * self.stride + self.cols
        }
    }
}

/// `out += a · wᵀ` for dense row-major `a` (m, k), `nn.Linear` weight `w` (n, k) and `out`
/// (m, n) in f32: the GEMM every linear of this encoder runs (for `bench --gemm`).
pub fn linear_accumulate_f32(a: &[f32], m: usize, k: usize, w: &[f32], n: usize, out: &mut [f32]) {
    let weight = Weight {
        f32: w,
        int8: None,
        bf16: None,
    };
    let (av, ov) = (View::dense(m, k), View::dense(m, n));
    linear_into(a, av, weight, out, ov, true, threads());
}

/// `out (+)= a · wᵀ` for an `nn.Linear` weight `w` (n, k): `out` is overwritten, or accumulated
/// into when `accumulate` (it then holds the bias and residual already). An int8 weight
/// quantises the rows of `a` and accumulates in int8 (always accumulating).
fn linear_into(
    a: &[f32],
    av: View,
    w: Weight,
    out: &mut [f32],
    ov: View,
    accumulate: bool,
    par: Parallelism,
) {
    if let Some((qw, kernel)) = w.int8 {
        assert!(accumulate && qw.n == ov.cols && qw.k == av.cols && a.len() >= av.extent());
        if av.rows == 0 {
            return;
        }
        let qx = quant::quantize_rows(a, av.rows, av.cols, av.stride, qw);
        quant::gemm_accumulate(&qx, qw, &mut out[..ov.extent()], ov.stride, kernel);
        return;
    }
    if let Some((bw, kernel)) = w.bf16 {
        assert!(accumulate && bw.n == ov.cols && bw.k == av.cols && a.len() >= av.extent());
        if av.rows == 0 {
            return;
        }
        let bx = Bf16Rows::new(a, av.rows, av.cols, av.stride);
        bf16::gemm_accumulate(&bx, bw, &mut out[..ov.extent()], ov.stride, kernel);
        return;
    }
    let w = w.f32;
    let (m, k, n) = (av.rows, av.cols, ov.cols);
    assert!(ov.rows == m && w.len() == n * k && a.len() >= av.extent() && out.len() >= ov.extent());
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the assert above bounds every index the GEMM reads and writes: `a` (m × k, row
    // stride av.stride), `w` read as wᵀ (k × n: element (kk, j) at j·k + kk) and `out` (m × n,
    // row stride ov.stride); `out` is borrowed mutably, so it overlaps neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            ov.stride as isize,
            accumulate,
            a.as_ptr(),
            1,
            av.stride as isize,
            w.as_ptr(),
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// Sets each row of `out` (view `ov`) to `bias`, plus the matching row of `residual` if given.
fn fill_rows(out: &mut [f32], ov: View, bias: &[f32], residual: Option<(&[f32], View)>) {
    let n = ov.cols;
    out.par_chunks_mut(ov.stride)
        .take(ov.rows)
        .enumerate()
        .for_each(|(r, row)| {
            let row = &mut row[..n];
            match residual {
                Some((res, rv)) => {
                    let src = &res[r * rv.stride..][..n];
                    for ((o, &s), &b) in row.iter_mut().zip(src).zip(bias) {
                        *o = s + b;
                    }
                }
                None => row.copy_from_slice(bias),
            }
        });
}

/// Rows per parallel work item for row-wise kernels.
fn row_chunk(width: usize) -> usize {
    (kernels::CHUNK / width.max(1)).max(1) * width.max(1)
}

/// LayerNorm over each row of `x` (rows of `weight.len()` values), in place.
fn layer_norm_rows(x: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
    x.par_chunks_mut(row_chunk(weight.len()))
        .for_each(|rows| kernels::layer_norm_rows(rows, weight, bias, eps));
}

/// race-eval's in-place kernel for `act`: GELU (both forms), ReLU and the identity; `None`
/// for the others (candle's ops run them).
fn activation_kernel(act: Activation) -> Option<fn(&mut [f32])> {
    Some(match act {
        Activation::GeluTanh => kernels::gelu_tanh_in_place,
        Activation::Gelu => kernels::gelu_erf_in_place,
        Activation::Relu => |c| c.iter_mut().for_each(|v| *v = v.max(0.0)),
        Activation::Linear => |_| {},
        _ => return None,
    })
}

/// The activation in place: by [`activation_kernel`], else by candle's op on a copy.
fn activate(x: &mut [f32], act: Activation) -> Result<()> {
    match (act, activation_kernel(act)) {
        (Activation::Linear, _) => {}
        (_, Some(f)) => x.par_chunks_mut(kernels::CHUNK).for_each(f),
        (other, None) => {
            let t = Tensor::from_slice(x, x.len(), &candle_core::Device::Cpu)?;
            let y = other.forward(&t)?.to_vec1::<f32>()?;
            x.copy_from_slice(&y);
        }
    }
    Ok(())
}

/// One sequence's share of an attention call: its queries, keys and context rows.
#[derive(Clone, Copy)]
struct SeqAttention {
    /// First query row and number of queries.
    q0: usize,
    queries: usize,
    /// First key (and value) row and number of keys.
    k0: usize,
    keys: usize,
    /// First context row (one per query).
    c0: usize,
    /// Offset of its `keys` additive mask values.
    mask0: usize,
}

/// Where attention reads and writes. Row `r`, head `h` of queries starts at `r·q_row + h·d`,
/// of keys at `r·kv_row + k_off + h·d`, values `… + v_off …`, context `r·ctx_row + h·d`.
struct AttentionIo<'a> {
    q: &'a [f32],
    q_row: usize,
    kv: &'a [f32],
    kv_row: usize,
    k_off: usize,
    v_off: usize,
    ctx_row: usize,
    seqs: Vec<SeqAttention>,
}

/// Every index attention touches stays within these bounds (checked once per sequence, not
/// per task).
fn check_attention_bounds(io: &AttentionIo, ctx: &[f32], mask: &[f32], d: &Dims) {
    let width = d.heads * d.head_dim;
    for s in io.seqs.iter().filter(|s| s.queries > 0) {
        assert!(s.keys > 0 && mask.len() >= s.mask0 + s.keys);
        assert!(io.q.len() >= (s.q0 + s.queries - 1) * io.q_row + width);
        assert!(io.kv.len() >= (s.k0 + s.keys - 1) * io.kv_row + io.k_off.max(io.v_off) + width);
        assert!(ctx.len() >= (s.c0 + s.queries - 1) * io.ctx_row + width);
    }
}

/// Attention in the layer's precision (`w`: one of its linears' weights): both products in
/// bf16 when its linears are bf16, else in f32; int8 layers take [`attention_bf16`]'s
/// `vdpbf16ps` kernels where the CPU has AVX512-BF16, else [`attention512`]'s AVX-512 f32 ones.
fn attend(io: &AttentionIo, ctx: &mut [f32], mask: &[f32], d: &Dims, w: &Weight) {
    match w.bf16 {
        Some((_, kernel)) => attention_bf16(io, ctx, mask, d, kernel),
        None => attention(io, ctx, mask, d, w.int8.is_some()),
    }
}

/// As [`attention`], with Q Kᵀ and P V in bf16 (their inputs rounded to bf16, f32 sums), as
/// PyTorch's CPU autocast runs them; the scale, mask and softmax stay f32. One task per
/// (sequence, head) packs the head's keys and its values transposed once, then runs the query
/// blocks.
fn attention_bf16(io: &AttentionIo, ctx: &mut [f32], mask: &[f32], d: &Dims, kernel: bf16::Kernel) {
    check_attention_bounds(io, ctx, mask, d);
    let dh = d.head_dim;
    let scale = 1.0 / (dh as f32).sqrt();
    let tasks: Vec<(usize, usize)> = (0..io.seqs.len())
        .filter(|&b| io.seqs[b].queries > 0)
        .flat_map(|b| (0..d.heads).map(move |head| (b, head)))
        .collect();
    let out = SharedMut(ctx.as_mut_ptr());
    tasks.into_par_iter().for_each(|(b, head)| {
        let s = io.seqs[b];
        let (nq, nk) = (s.queries, s.keys);
        let kb = s.k0 * io.kv_row + io.k_off + head * dh;
        let vb = s.k0 * io.kv_row + io.v_off + head * dh;
        let keys = Bf16Linear::from_fn(nk, dh, |j, kk| io.kv[kb + j * io.kv_row + kk]);
        let values = Bf16Linear::from_fn(dh, nk, |j, kk| io.kv[vb + kk * io.kv_row + j]);
        let mut scores = vec![0f32; QUERY_BLOCK * nk];
        let mut block = vec![0f32; QUERY_BLOCK * dh];
        for t0 in (0..nq).step_by(QUERY_BLOCK) {
            let n = QUERY_BLOCK.min(nq - t0);
            let q = Bf16Rows::new(&io.q[(s.q0 + t0) * io.q_row + head * dh..], n, dh, io.q_row);
            let sc = &mut scores[..n * nk];
            sc.fill(0.0);
            bf16::gemm_accumulate_serial(&q, &keys, sc, nk, kernel);
            sc.iter_mut().for_each(|v| *v *= scale);
            kernels::masked_softmax_rows(sc, nk, &mask[s.mask0..][..nk]);
            let p = Bf16Rows::new(sc, n, nk, nk);
            let c = &mut block[..n * dh];
            c.fill(0.0);
            bf16::gemm_accumulate_serial(&p, &values, c, dh, kernel);
            for (i, row) in c.chunks_exact(dh).enumerate() {
                // SAFETY: within the bounds checked above; this task alone writes this
                // sequence's context rows in this head's columns, and nothing reads `ctx`
                // while the tasks run.
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(
                        out.at((s.c0 + t0 + i) * io.ctx_row + head * dh),
                        dh,
                    )
                };
                dst.copy_from_slice(row);
            }
        }
    });
}

/// One attention kernel of [`attention_bf16`] / [`attention512`]'s signature run as one task
/// per (sequence, head), so that K and V are packed once for all of its queries.
type HeadKernel<S> = unsafe fn(
    *const f32,
    usize,
    *const f32,
    *const f32,
    usize,
    *mut f32,
    usize,
    usize,
    usize,
    usize,
    &[f32],
    f32,
    &mut S,
);

/// # Safety
/// `kernel` must run on this CPU (its `available` checked); `io`'s bounds checked by
/// [`check_attention_bounds`] against the buffer `out` points into.
unsafe fn per_head<S: Default + Send>(
    io: &AttentionIo,
    out: &SharedMut,
    mask: &[f32],
    d: &Dims,
    scale: f32,
    kernel: HeadKernel<S>,
) {
    let dh = d.head_dim;
    let tasks: Vec<(usize, usize)> = (0..io.seqs.len())
        .filter(|&b| io.seqs[b].queries > 0)
        .flat_map(|b| (0..d.heads).map(move |head| (b, head)))
        .collect();
    tasks
        .into_par_iter()
        .for_each_init(S::default, |scratch, (b, head)| {
            let s = io.seqs[b];
            let q = s.q0 * io.q_row + head * dh;
            let k = s.k0 * io.kv_row + io.k_off + head * dh;
            let v = s.k0 * io.kv_row + io.v_off + head * dh;
            let c = s.c0 * io.ctx_row + head * dh;
            // SAFETY: within the bounds checked by the caller; this task alone writes this
            // sequence's context rows in this head's columns, and nothing reads `ctx` meanwhile.
            unsafe {
                kernel(
                    io.q.as_ptr().add(q),
                    io.q_row,
                    io.kv.as_ptr().add(k),
                    io.kv.as_ptr().add(v),
                    io.kv_row,
                    out.at(c),
                    io.ctx_row,
                    s.queries,
                    s.keys,
                    dh,
                    &mask[s.mask0..][..s.keys],
                    scale,
                    scratch,
                );
            }
        });
}

/// softmax(Q Kᵀ / √d + mask) V for every (sequence, head), written into `ctx`. `int8`: the
/// layer runs in int8, whose attention takes the bf16 kernels of [`attention_bf16`] where the
/// CPU has AVX512-BF16, else the f32 AVX-512 kernels of [`attention512`] where it has
/// AVX-512F.
fn attention(io: &AttentionIo, ctx: &mut [f32], mask: &[f32], d: &Dims, int8: bool) {
    let dh = d.head_dim;
    let scale = 1.0 / (dh as f32).sqrt();
    check_attention_bounds(io, ctx, mask, d);
    let tasks: Vec<(usize, usize, usize)> = io
        .seqs
        .iter()
        .enumerate()
        .flat_map(|(b, s)| {
            (0..d.heads).flat_map(move |head| {
                (0..s.queries.div_ceil(QUERY_BLOCK)).map(move |blk| (b, head, blk * QUERY_BLOCK))
            })
        })
        .collect();
    let out = SharedMut(ctx.as_mut_ptr());
    if int8 && attention_bf16::available(dh) {
        // SAFETY: `available` was checked.
        unsafe { per_head(io, &out, mask, d, scale, attention_bf16::head) };
        return;
    }
    if int8 && attention512::available(dh) {
        // SAFETY: `available` was checked.
        unsafe { per_head(io, &out, mask, d, scale, attention512::head) };
        return;
    }
    let max_keys = io.seqs.iter().map(|s| s.keys).max().unwrap_or(0);
    tasks.into_par_iter().for_each_init(
        || vec![0f32; QUERY_BLOCK * max_keys],
        |scores, (b, head, t0)| {
            let s = io.seqs[b];
            let (nq, nk) = (QUERY_BLOCK.min(s.queries - t0), s.keys);
            let q = (s.q0 + t0) * io.q_row + head * dh;
            let k = s.k0 * io.kv_row + io.k_off + head * dh;
            let v = s.k0 * io.kv_row + io.v_off + head * dh;
            let c = (s.c0 + t0) * io.ctx_row + head * dh;
            let sc = &mut scores[..nq * nk];
            // SAFETY: reads stay within the bounds asserted above; the write covers this
            // sequence's context rows t0..t0+nq in this head's columns only, which no other task
            // writes, and nothing reads `ctx` while the tasks run.
            unsafe {
                // scores = scale · Q_block Kᵀ   (nq × nk)
                gemm::gemm(
                    nq,
                    nk,
                    dh,
                    sc.as_mut_ptr(),
                    1,
                    nk as isize,
                    false,
                    io.q.as_ptr().add(q),
                    1,
                    io.q_row as isize,
                    io.kv.as_ptr().add(k),
                    io.kv_row as isize,
                    1,
                    0.0,
                    scale,
                    false,
                    false,
                    false,
                    Parallelism::None,
                );
            }
            kernels::masked_softmax_rows(sc, nk, &mask[s.mask0..][..nk]);
            // SAFETY: as above.
            unsafe {
                // context block = P V   (nq × head_dim)
                gemm::gemm(
                    nq,
                    dh,
                    nk,
                    out.at(c),
                    1,
                    io.ctx_row as isize,
                    false,
                    sc.as_ptr(),
                    1,
                    nk as isize,
                    io.kv.as_ptr().add(v),
                    1,
                    io.kv_row as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    Parallelism::None,
                );
            }
        },
    );
}

/// One layer over every row of `rows`; `x` (rows × H) is replaced by the layer's output.
fn layer_full(
    w: &LayerSlices,
    layer: &LayerTensors,
    x: &mut [f32],
    mask: &[f32],
    rows: &Rows,
    d: &Dims,
    bufs: &mut Buffers,
) -> Result<()> {
    let (h, n, par) = (d.hidden, rows.total(), threads());
    let xv = View::dense(n, h);
    // Q | K | V side by side: qkv[r] = [x Wqᵀ + bq, x Wkᵀ + bk, x Wvᵀ + bv].
    if let (Some((_, kernel)), true) = (w.q.0.bf16, w.k.0.bf16.is_some() && w.v.0.bf16.is_some()) {
        // bf16: the input rows rounded once for the three GEMMs.
        let bx = Bf16Rows::new(x, n, h, h);
        let ov = View {
            rows: n,
            cols: h,
            stride: 3 * h,
        };
        for (slot, (wt, bias)) in [w.q, w.k, w.v].into_iter().enumerate() {
            let bw = wt.bf16.expect("checked above").0;
            let out = &mut bufs.qkv[slot * h..];
            fill_rows(out, ov, bias, None);
            bf16::gemm_accumulate(&bx, bw, &mut out[..ov.extent()], ov.stride, kernel);
        }
    } else {
        project_shared(x, xv, &[w.q, w.k, w.v], &mut bufs.qkv, 0, h, par);
    }
    let io = AttentionIo {
        q: &bufs.qkv,
        q_row: 3 * h,
        kv: &bufs.qkv,
        kv_row: 3 * h,
        k_off: h,
        v_off: 2 * h,
        ctx_row: h,
        seqs: (0..rows.len.len())
            .map(|b| SeqAttention {
                q0: rows.start[b],
                queries: rows.len[b],
                k0: rows.start[b],
                keys: rows.len[b],
                c0: rows.start[b],
                mask0: rows.mask[b],
            })
            .collect(),
    };
    attend(&io, &mut bufs.ctx, mask, d, &w.q.0);
    if int8_tail(w, layer, x, n, d, bufs) {
        return Ok(());
    }
    // att = LayerNorm(x + ctx Wdᵀ + bd)
    linear_bias_into(
        &bufs.ctx,
        xv,
        w.dense.0,
        w.dense.1,
        Some((x, xv)),
        &mut bufs.att,
        xv,
        par,
    );
    layer_norm_rows(&mut bufs.att, w.norm1.0, w.norm1.1, layer.eps);
    // x = LayerNorm(att + act(att Wfᵀ + bf) Woᵀ + bo)
    let fv = View::dense(n, d.inter);
    linear_bias_into(&bufs.att, xv, w.ffn.0, w.ffn.1, None, &mut bufs.ff, fv, par);
    activate_linear_into(
        &mut bufs.ff,
        fv,
        layer.activation,
        w.ffn_out,
        Some((&bufs.att, xv)),
        x,
        xv,
        par,
    )?;
    layer_norm_rows(x, w.norm2.0, w.norm2.1, layer.eps);
    Ok(())
}

/// The rest of [`layer_full`] after attention when its three linears are int8 (and race-eval
/// has a kernel for the activation): each GEMM runs LayerNorm or the activation on its output
/// rows and quantises them for the next GEMM as it finishes them, while they are in cache
/// ([`quant::gemm_bias_post`]). Returns false, having done nothing, otherwise.
fn int8_tail(
    w: &LayerSlices,
    layer: &LayerTensors,
    x: &mut [f32],
    n: usize,
    d: &Dims,
    bufs: &mut Buffers,
) -> bool {
    let (Some((dense, kernel)), Some((ffn, _)), Some((ffn_out, _)), Some(act)) = (
        w.dense.0.int8,
        w.ffn.0.int8,
        w.ffn_out.0.int8,
        activation_kernel(layer.activation),
    ) else {
        return false;
    };
    let (h, i) = (d.hidden, d.inter);
    assert!(x.len() >= n * h && bufs.att.len() >= n * h && bufs.ff.len() >= n * i);
    if n == 0 {
        return true;
    }
    let eps = layer.eps;
    let norm1 = |row: &mut [f32]| kernels::layer_norm_rows(row, w.norm1.0, w.norm1.1, eps);
    let norm2 = |row: &mut [f32]| kernels::layer_norm_rows(row, w.norm2.0, w.norm2.1, eps);
    // att = LayerNorm(x + ctx Wdᵀ + bd), quantised for the feed-forward.
    let qctx = quant::quantize_rows(&bufs.ctx, n, h, h, dense);
    let att = &mut bufs.att[..n * h];
    let res = Some((&x[..], h));
    let qatt = quant::gemm_bias_post(
        &qctx,
        dense,
        w.dense.1,
        res,
        att,
        h,
        kernel,
        &norm1,
        Some(ffn),
    );
    drop(qctx);
    // ff = act(att Wfᵀ + bf), quantised for the output projection.
    let qatt = qatt.expect("quantised for ffn");
    let ff = &mut bufs.ff[..n * i];
    let qff = quant::gemm_bias_post(
        &qatt,
        ffn,
        w.ffn.1,
        None,
        ff,
        i,
        kernel,
        &act,
        Some(ffn_out),
    );
    drop(qatt);
    // x = LayerNorm(att + ff Woᵀ + bo)
    let qff = qff.expect("quantised for ffn_output");
    let res = Some((&bufs.att[..], h));
    quant::gemm_bias_post(
        &qff,
        ffn_out,
        w.ffn_out.1,
        res,
        &mut x[..n * h],
        h,
        kernel,
        &norm2,
        None,
    );
    true
}

/// `out = (residual +) bias + act(a) · wᵀ` for `(w, bias)`, with `act` applied to `a` in place:
/// an int8 weight takes the activation row by row inside its input's quantisation (no pass of
/// its own) where race-eval has a kernel for it.
#[allow(clippy::too_many_arguments)]
fn activate_linear_into(
    a: &mut [f32],
    av: View,
    act: Activation,
    (w, bias): (Weight, &[f32]),
    residual: Option<(&[f32], View)>,
    out: &mut [f32],
    ov: View,
    par: Parallelism,
) -> Result<()> {
    if let (Some((qw, kernel)), Some(f)) = (w.int8, activation_kernel(act)) {
        assert!(qw.n == ov.cols && qw.k == av.cols && a.len() >= av.extent());
        if av.rows == 0 {
            return Ok(());
        }
        let qx = quant::quantize_rows_activated(a, av.rows, av.cols, av.stride, qw, f);
        let res = residual.map(|(r, rv)| (r, rv.stride));
        let out = &mut out[..ov.extent()];
        quant::gemm_bias(&qx, qw, bias, res, out, ov.stride, kernel);
        return Ok(());
    }
    activate(a, act)?;
    linear_bias_into(a, av, w, bias, residual, out, ov, par);
    Ok(())
}

/// Linears `ws` that read the same rows `x` (of Q, K, V), each into its column block of the
/// (rows × 3H) `qkv` buffer `out` (block `first + i` for `ws[i]`): int8 weights that quantise
/// their input alike ([`QuantLinear::same_input`]) share one quantisation of `x` (while
/// calibrating, only the first then records the input's maxima: they are the others' too).
fn project_shared(
    x: &[f32],
    xv: View,
    ws: &[(Weight, &[f32])],
    out: &mut [f32],
    first: usize,
    h: usize,
    par: Parallelism,
) {
    let int8: Option<Vec<_>> = ws.iter().map(|(w, _)| w.int8).collect();
    if let Some(q) = int8.filter(|q| q.iter().all(|(w, _)| w.same_input(q[0].0))) {
        if xv.rows == 0 {
            return;
        }
        assert!(q.iter().all(|(w, _)| w.n == h && w.k == xv.cols) && x.len() >= xv.extent());
        let qx = quant::quantize_rows(x, xv.rows, xv.cols, xv.stride, q[0].0);
        let stride = 3 * h;
        for (i, ((qw, kernel), (_, bias))) in q.iter().zip(ws).enumerate() {
            let ov = View {
                rows: xv.rows,
                cols: h,
                stride,
            };
            let out = &mut out[(first + i) * h..][..ov.extent()];
            quant::gemm_bias(&qx, qw, bias, None, out, stride, *kernel);
        }
        return;
    }
    for (i, &(wt, bias)) in ws.iter().enumerate() {
        project_into_qkv(x, xv, wt, bias, out, first + i, h, par);
    }
}

/// Column block `slot` (0 = Q, 1 = K, 2 = V) of the (rows × 3H) `qkv` buffer = x Wᵀ + b.
#[allow(clippy::too_many_arguments)]
fn project_into_qkv(
    x: &[f32],
    xv: View,
    wt: Weight,
    bias: &[f32],
    qkv: &mut [f32],
    slot: usize,
    h: usize,
    par: Parallelism,
) {
    let ov = View {
        rows: xv.rows,
        cols: h,
        stride: 3 * h,
    };
    let out = &mut qkv[slot * h..];
    linear_bias_into(x, xv, wt, bias, None, out, ov, par);
}

/// `out = (residual +) bias + a · wᵀ`: int8 writes the bias and residual in its epilogue; the
/// other forms fill `out` with them and accumulate into it.
#[allow(clippy::too_many_arguments)]
fn linear_bias_into(
    a: &[f32],
    av: View,
    w: Weight,
    bias: &[f32],
    residual: Option<(&[f32], View)>,
    out: &mut [f32],
    ov: View,
    par: Parallelism,
) {
    if let Some((qw, kernel)) = w.int8 {
        assert!(qw.n == ov.cols && qw.k == av.cols && a.len() >= av.extent());
        if av.rows == 0 {
            return;
        }
        let qx = quant::quantize_rows(a, av.rows, av.cols, av.stride, qw);
        let res = residual.map(|(r, rv)| (r, rv.stride));
        quant::gemm_bias(
            &qx,
            qw,
            bias,
            res,
            &mut out[..ov.extent()],
            ov.stride,
            kernel,
        );
        return;
    }
    fill_rows(out, ov, bias, residual);
    linear_into(a, av, w, out, ov, true, par);
}

/// The last layer for the [CLS] rows alone: keys and values for every row, everything else for
/// the first row of each sequence. Returns (batch × H).
fn layer_cls(
    w: &LayerSlices,
    layer: &LayerTensors,
    x: &[f32],
    mask: &[f32],
    rows: &Rows,
    d: &Dims,
    bufs: &mut Buffers,
) -> Result<Vec<f32>> {
    let (h, b, n, par) = (d.hidden, rows.len.len(), rows.total(), threads());
    let xv = View::dense(n, h);
    project_shared(x, xv, &[w.k, w.v], &mut bufs.qkv, 1, h, par);
    // The [CLS] row of each sequence.
    let bv = View::dense(b, h);
    let mut cls = vec![0f32; b * h];
    for (dst, &start) in cls.chunks_exact_mut(h).zip(&rows.start) {
        dst.copy_from_slice(&x[start * h..][..h]);
    }
    let mut q = vec![0f32; b * h];
    linear_bias_into(&cls, bv, w.q.0, w.q.1, None, &mut q, bv, par);
    let io = AttentionIo {
        q: &q,
        q_row: h,
        kv: &bufs.qkv,
        kv_row: 3 * h,
        k_off: h,
        v_off: 2 * h,
        ctx_row: h,
        seqs: (0..b)
            .map(|i| SeqAttention {
                q0: i,
                queries: 1,
                k0: rows.start[i],
                keys: rows.len[i],
                c0: i,
                mask0: rows.mask[i],
            })
            .collect(),
    };
    let mut ctx = vec![0f32; b * h];
    attend(&io, &mut ctx, mask, d, &w.q.0);
    let mut att = vec![0f32; b * h];
    linear_bias_into(
        &ctx,
        bv,
        w.dense.0,
        w.dense.1,
        Some((&cls, bv)),
        &mut att,
        bv,
        par,
    );
    layer_norm_rows(&mut att, w.norm1.0, w.norm1.1, layer.eps);
    let fv = View::dense(b, d.inter);
    let mut ff = vec![0f32; b * d.inter];
    linear_bias_into(&att, bv, w.ffn.0, w.ffn.1, None, &mut ff, fv, par);
    let mut out = vec![0f32; b * h];
    activate_linear_into(
        &mut ff,
        fv,
        layer.activation,
        w.ffn_out,
        Some((&att, bv)),
        &mut out,
        bv,
        par,
    )?;
    layer_norm_rows(&mut out, w.norm2.0, w.norm2.1, layer.eps);
    Ok(out)
}
