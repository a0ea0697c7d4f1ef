/// Where a tensor's storage lives and where its kernels run.
///
/// Everything device-specific sits behind two seams: ``TensorBuffer`` (who owns
/// the memory) and the kernel entry points in `Kernels/` (who computes). Layers,
/// models and autograd only see ``Tensor`` values, so a CUDA backend adds a case
/// here, a buffer kind and a kernel set, without touching them.
public enum Device: String, Sendable, Codable, CustomStringConvertible {
  case cpu

  public var description: String { rawValue }
}
