import Foundation
import QuadraCore
import QuadraModels

/// Why the inference engine cannot compile a model or run an input.
public enum InferenceError: Error, Equatable, CustomStringConvertible, LocalizedError {
  /// The images do not fit the model: `reason` names the field and the allowed range.
  case invalidInput(reason: String)
  /// A parameter the plan needs is missing or has an unexpected shape (a model not built by ``VisionModel``).
  case invalidModel(reason: String)

  public var description: String {
    switch self {
    case .invalidInput(let reason): return "inference input: \(reason)"
    case .invalidModel(let reason): return "inference model: \(reason)"
    }
  }

  public var errorDescription: String? { description }
}

/// A tape-free inference engine: a ``VisionModel`` compiled once into a plan of fused steps over
/// NHWC buffers.
///
/// Compilation (``init(model:)``) copies the weights and rewrites them so the forward pass has
/// fewer, cheaper steps (all exact in real arithmetic; Float results differ from the tape's by rounding):
///
/// - **Layer scale folded** into the map before it: `γ ⊙ (W x + b) = (diag(γ) W) x + γ ⊙ b` for
///   `pwconv2` and gⁿConv's `proj_out`; for the quadratic mixer
///   `γ ⊙ ((W_a∗x + b_a) ⊙ (W_b∗x + b_b) + W_c∗x + b_c)` scales `W_a, b_a, W_c, b_c` by `γ`.
/// - **LayerNorm's affine part folded** into the linear map that follows it (`pwconv1`, `proj_in`,
///   the 2×2 downsampling convolution, the head): `W (γ ⊙ x̂ + β) + b = (W diag(γ)) x̂ + (W β + b)`,
///   so the LN step only computes `x̂ = (x − μ)/√(σ² + ε)`, and it runs inside the same row chunk as the
///   GEMM that consumes it (the downsampling LN writes straight into the 2×2 patch matrix).
///   The LN before the quadratic mixer keeps its affine part: the zero padding of the depthwise
///   convolution does not commute with adding β.
/// - gⁿConv's scale `s` folded into its depthwise weights and bias.
/// - GEMM weights prepacked once (`GEMM.PackedMatrix`).
///
/// Per block, the MLP `x + pwconv2(GELU(pwconv1(LN(x))))` runs chunk by chunk of rows: the residual
/// add of the mixer, LN, the first GEMM (bias in its epilogue), GELU on the chunk while it is in cache,
/// and the second GEMM accumulating into `x` (`beta = 1`, the residual). The 4C-wide hidden activation
/// never exists for the whole image. Chunks are spread over the threads when there are enough rows;
/// for few rows (batch 1, late stages) the chunk's GEMMs and element-wise passes are split instead.
///
/// Buffers come from a workspace allocated on the first call for a (batch, height, width, threads)
/// and reused while those stay the same, charged to the ``ComputeContext``'s ``MemoryTracker`` current
/// at that call. Drop path is the identity (evaluation mode).
///
/// One engine runs one call at a time (the workspace is shared state); use one engine per thread.
public final class InferenceEngine {
  public let config: ModelConfig
  let plan: InferencePlan
  private var workspace: InferenceWorkspace?

  /// Compiles `model` (its current weights; later changes to the model are not seen).
  public init(model: VisionModel) throws {
    config = model.config
    plan = try InferencePlan(model: model)
  }

  /// Bytes of the folded, prepacked weights.
  public var weightBytes: Int { plan.weightBytes }

  /// Bytes of the current workspace (0 before the first call).
  public var workspaceBytes: Int { workspace?.byteCount ?? 0 }

  /// Logits `[N, classCount]` of NHWC images `[N, H, W, inputChannels]` (already normalized).
  public func logits(_ images: Tensor) throws -> Tensor {
    guard images.rank == 4 else {
      throw InferenceError.invalidInput(reason: "images must be NHWC [N, H, W, C], got shape \(images.shape)")
    }
    let output = Tensor(uninitializedShape: [images.shape[0], config.classCount])
    try images.withUnsafeBufferPointer { input in
      try logits(
        images: input.baseAddress!, batch: images.shape[0], height: images.shape[1], width: images.shape[2],
        channels: images.shape[3], into: output.buffer.pointer)
    }
    return output
  }

  /// Writes the logits `[batch, classCount]` of `batch` NHWC images (`height × width × channels` floats each).
  public func logits(
    images: UnsafePointer<Float>, batch: Int, height: Int, width: Int, channels: Int,
    into output: UnsafeMutablePointer<Float>
  ) throws {
    try plan.checkInput(batch: batch, height: height, width: width, channels: channels)
    let key = InferenceWorkspace.Key(batch: batch, height: height, width: width, threads: Parallel.threadCount)
    if workspace?.key != key {
      workspace = nil  // release the old buffers before allocating the new ones
      workspace = try InferenceWorkspace(plan: plan, key: key)
    }
    plan.run(images: images, output: output, workspace: workspace!)
  }
}
