import Foundation
import QuadraNN

/// The data-parallel gradient exchange, as a ``GradientHook``: sums every parameter's gradient over
/// all members of a ``Communicator``, packed into flat buckets of at most ``bucketBytes``.
///
/// It *sums* rather than averages: the ``Trainer`` seeds each rank's backward pass with
/// n_r / B (its share of the global batch of B samples), so Σ_r (n_r / B) ∇ mean_r = ∇ mean over
/// all B samples, exact for unequal shards too. A parameter that has a gradient on some rank but
/// not on others gets zeros for the missing ones; one that has none anywhere stays nil.
/// The exchange runs after the whole backward pass (no overlap with it).
public final class GradientAllReduce: GradientHook {
  public let communicator: any Communicator
  /// Largest bucket, in bytes (default 25 MB, as PyTorch DDP).
  public let bucketBytes: Int
  /// Wall-clock seconds spent in the exchange so far (packing, all-reduce, unpacking).
  public private(set) var seconds: Double = 0
  /// Optimizer steps exchanged so far.
  public private(set) var steps = 0
  private var bucket: [Float] = []

  public init(communicator: any Communicator, bucketBytes: Int = 25_000_000) {
    self.communicator = communicator
    self.bucketBytes = Swift.max(bucketBytes, 4)
  }

  public func processGradients(of parameters: [(name: String, parameter: Parameter)], step: Int) throws {
    let start = DispatchTime.now().uptimeNanoseconds
    defer {
      seconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
      steps += 1
    }
    // Which parameters have a gradient anywhere (a count per parameter, summed).
    let present = try communicator.allReduceSum(parameters.map { $0.parameter.variable.grad == nil ? 0 : 1 })
    let variables = parameters.indices.filter { present[$0] > 0 }.map { parameters[$0].parameter.variable }
    for variable in variables where variable.grad == nil { variable.grad = Tensor(zeros: variable.shape) }
    let capacity = bucketBytes / MemoryLayout<Float>.stride
    var index = 0
    while index < variables.count {
      // A bucket: consecutive gradients up to the capacity (a larger gradient travels alone).
      var end = index
      var floats = 0
      while end < variables.count, end == index || floats + variables[end].grad!.count <= capacity {
        floats += variables[end].grad!.count
        end += 1
      }
      if bucket.count < floats { bucket = [Float](repeating: 0, count: floats) }
      try bucket.withUnsafeMutableBufferPointer { flat in
        var offset = 0
        for variable in variables[index..<end] {
          variable.grad!.withUnsafeBufferPointer { source in
            _ = UnsafeMutableBufferPointer(rebasing: flat[offset..<(offset + source.count)]).initialize(from: source)
            offset += source.count
          }
        }
        try communicator.allReduceSum(UnsafeMutableBufferPointer(rebasing: flat[0..<floats]))
        offset = 0
        for variable in variables[index..<end] {
          variable.grad!.withUnsafeMutableBufferPointer { target in
            _ = target.initialize(from: UnsafeMutableBufferPointer(rebasing: flat[offset..<(offset + target.count)]))
            offset += target.count
          }
        }
      }
      index = end
    }
  }
}

/// Data-parallel helpers on parameters.
public enum ParameterSynchronization {
  /// Copies `root`'s parameter values to every member, in flat buckets of at most `bucketBytes`.
  public static func broadcast(
    _ parameters: [(name: String, parameter: Parameter)], from root: Int = 0, over communicator: any Communicator,
    bucketBytes: Int = 25_000_000
  ) throws {
    for (_, parameter) in parameters {
      var value = parameter.variable.value.copy()
      try value.withUnsafeMutableBufferPointer { try communicator.broadcast($0, root: root) }
      parameter.variable.update(value)
    }
  }

  /// A stable hash of the parameter values (bit patterns, in order), to check that members agree.
  public static func fingerprint(_ parameters: [(name: String, parameter: Parameter)]) -> UInt64 {
    var state = FNV1a.hash(Array("parameters".utf8))
    for (name, parameter) in parameters {
      state = FNV1a.hash(Array(name.utf8), into: state)
      parameter.variable.value.withUnsafeBufferPointer { values in
        state = FNV1a.hash(UnsafeRawBufferPointer(values), into: state)
      }
    }
    return state
  }
}
