import Foundation
import Synchronization

/// A tensor that takes part in automatic differentiation.
///
/// Operations on variables compute their value eagerly with QuadraCore kernels
/// and, while ``GradientMode/isEnabled`` and some input tracks gradients, append a
/// ``GradientNode`` to the tape: the inputs and a *pullback* that maps the output
/// gradient to input gradients. ``backward(_:)`` replays the tape in reverse.
///
/// Parameters are leaves created with `requiresGrad: true`; their gradients
/// accumulate in ``grad`` across backward passes until ``zeroGradient()``.
public final class Variable: @unchecked Sendable {
  /// The current value. Optimizers update it in place through ``update(_:)``.
  public private(set) var value: Tensor
  /// Accumulated gradient of the last backward passes (leaves only).
  public var grad: Tensor?
  /// Whether this leaf wants a gradient.
  public let requiresGrad: Bool
  /// The tape entry that produced this variable (nil for leaves and untracked results).
  public internal(set) var node: GradientNode?

  /// Creates a leaf.
  public init(_ value: Tensor, requiresGrad: Bool = false) {
    self.value = value
    self.requiresGrad = requiresGrad
  }

  init(value: Tensor, node: GradientNode?) {
    self.value = value
    self.requiresGrad = false
    self.node = node
  }

  public var shape: [Int] { value.shape }
  public var rank: Int { value.rank }

  /// True when gradients flow through this variable (a trainable leaf or a recorded result).
  public var tracksGradient: Bool { requiresGrad || node != nil }

  /// Replaces the value (same shape), e.g. an optimizer step.
  public func update(_ newValue: Tensor) {
    opPrecondition(
      newValue.shape == value.shape, "Variable.update: new shape \(newValue.shape) differs from \(value.shape)")
    value = newValue
  }

  /// Gives in-place access to the value as a tensor, for optimizers: the storage is updated
  /// without a copy when nothing else shares it. The body must keep the shape.
  public func updateValueInPlace<R>(_ body: (inout Tensor) throws -> R) rethrows -> R {
    let shape = value.shape
    defer {
      opPrecondition(
        value.shape == shape, "Variable.updateValueInPlace: the shape changed from \(shape) to \(value.shape)")
    }
    return try body(&value)
  }

  /// Forgets the accumulated gradient.
  public func zeroGradient() { grad = nil }

  /// A variable with the same value that gradients do not flow through.
  public func detached() -> Variable { Variable(value) }

  /// Records the result of an operation.
  ///
  /// - Parameters:
  ///   - value: the computed output.
  ///   - inputs: the operation's variable inputs, in the order the pullback returns gradients.
  ///   - pullback: given ∂L/∂output, returns ∂L/∂input for each input (nil where an input
  ///     does not track gradients or the gradient is zero). It is called at most once, and
  ///     whatever it captured is freed right after.
  public static func record(
    _ value: Tensor, inputs: [Variable], pullback: @escaping (Tensor) -> [Tensor?]
  ) -> Variable {
    guard GradientMode.isEnabled, inputs.contains(where: \.tracksGradient) else {
      return Variable(value: value, node: nil)
    }
    return Variable(value: value, node: GradientNode(inputs: inputs, pullback: { gradient, _ in pullback(gradient) }))
  }

  /// Records the result of an operation whose pullback can fold the gradient its **first** input has
  /// already received into the gradient it returns for that input.
  ///
  /// The backward pass visits nodes latest first, so when a variable feeds several ops — a block's input
  /// feeds its residual join and its mixer — the gradient from the later use is pending on the variable
  /// when the earlier op's pullback runs. Summing the two is otherwise a separate pass over memory; a
  /// kernel that writes its input gradient row by row can add the pending one as it goes.
  ///
  /// - Parameter pullback: given ∂L/∂output and the first input's pending gradient (nil when there is
  ///   none), returns ∂L/∂input for each input as ``record(_:inputs:pullback:)``'s does, except that a
  ///   non-nil gradient for the first input, when a pending one was passed, must already include it: it
  ///   replaces the pending gradient instead of being added to it.
  public static func record(
    _ value: Tensor, inputs: [Variable], foldingPullback pullback: @escaping (Tensor, Tensor?) -> [Tensor?]
  ) -> Variable {
    guard GradientMode.isEnabled, inputs.contains(where: \.tracksGradient) else {
      return Variable(value: value, node: nil)
    }
    return Variable(value: value, node: GradientNode(inputs: inputs, pullback: pullback, foldsPendingGradient: true))
  }

  /// Back-propagates from this variable.
  ///
  /// - Parameter seed: ∂L/∂self, of this variable's shape. It may be omitted only for a
  ///   single-element output (a scalar loss), which then gets gradient 1, as in PyTorch.
  /// - Throws: ``AutogradError`` when the seed is missing for a multi-element output or has the
  ///   wrong shape, or when the graph below this variable was already released by an earlier
  ///   backward pass (as PyTorch's "Trying to backward through the graph a second time"). All
  ///   checks happen before any gradient is written, so a failed call changes nothing.
  ///
  /// Nodes are visited in reverse tape order; each node's pullback and saved tensors
  /// are released as soon as it has run, so activation memory falls during backward.
  /// A graph therefore supports one backward pass: a second pass through any of its
  /// nodes, from the same root or from another root sharing them, throws.
  public func backward(_ seed: Tensor? = nil) throws(AutogradError) {
    let seedGradient: Tensor
    if let seed {
      guard seed.shape == shape else { throw .seedShapeMismatch(seed: seed.shape, output: shape) }
      seedGradient = seed
    } else {
      guard value.count == 1 else { throw .implicitSeedForNonScalar(shape: shape) }
      seedGradient = Tensor(shape: shape, repeating: 1)
    }
    guard let root = node else {
      if requiresGrad { accumulate(seedGradient) }
      return
    }
    let nodes = GradientNode.reachable(from: root)
    if let released = nodes.first(where: \.isReleased) {
      throw .graphAlreadyReleased(tapePosition: released.position)
    }
    root.outputGradient = seedGradient
    for node in nodes {
      guard let gradient = node.outputGradient, let pullback = node.pullback else {
        node.release()
        continue
      }
      let inputs = node.inputs
      // Only a recorded input has a pending gradient (a leaf's `grad` accumulates across passes).
      let pending = node.foldsPendingGradient ? inputs.first?.node?.outputGradient : nil
      node.release()
      let inputGradients = pullback(gradient, pending)
      guard inputGradients.count == inputs.count else {
        throw .pullbackGradientCount(returned: inputGradients.count, inputs: inputs.count)
      }
      for (index, (input, inputGradient)) in zip(inputs, inputGradients).enumerated() {
        guard let inputGradient else { continue }
        guard inputGradient.shape == input.shape else {
          throw .pullbackGradientShape(gradient: inputGradient.shape, input: input.shape)
        }
        if let inputNode = input.node {
          if index == 0 && pending != nil {
            inputNode.outputGradient = inputGradient  // already includes the pending gradient
            continue
          }
          inputNode.outputGradient = inputNode.outputGradient.map { $0.adding(inputGradient) } ?? inputGradient
        } else if input.requiresGrad {
          input.accumulate(inputGradient)
        }
      }
    }
  }

  func accumulate(_ gradient: Tensor) {
    if let existing = grad {
      grad = existing.adding(gradient)
    } else {
      grad = gradient
    }
  }
}

extension Variable: CustomStringConvertible {
  public var description: String {
    "Variable(\(value)\(requiresGrad ? ", requiresGrad" : "")\(node != nil ? ", recorded" : ""))"
  }
}

/// One entry of the gradient tape.
public final class GradientNode: @unchecked Sendable {
  /// The last position handed out; atomic because graphs are recorded concurrently in one process.
  private static let lastPosition = Atomic<Int>(0)

  /// Position on the tape: a node's inputs were always recorded before it (positions are unique
  /// and increase in recording order, also across threads).
  let position: Int
  var inputs: [Variable]
  /// Maps the output gradient (and, for ``foldsPendingGradient``, the first input's pending gradient) to
  /// the input gradients.
  var pullback: ((Tensor, Tensor?) -> [Tensor?])?
  /// Whether the pullback takes the first input's pending gradient and returns it summed in
  /// (``Variable/record(_:inputs:foldingPullback:)``).
  let foldsPendingGradient: Bool
  var outputGradient: Tensor?
  /// Set once a backward pass has run (or skipped) this node and dropped what it saved.
  private(set) var isReleased = false

  init(inputs: [Variable], pullback: @escaping (Tensor, Tensor?) -> [Tensor?], foldsPendingGradient: Bool = false) {
    self.position = GradientNode.lastPosition.add(1, ordering: .relaxed).newValue
    self.inputs = inputs
    self.pullback = pullback
    self.foldsPendingGradient = foldsPendingGradient
  }

  func release() {
    inputs = []
    pullback = nil
    outputGradient = nil
    isReleased = true
  }

  /// The nodes that `root` depends on (itself included), latest first.
  static func reachable(from root: GradientNode) -> [GradientNode] {
    var seen: Set<ObjectIdentifier> = [ObjectIdentifier(root)]
    var stack = [root]
    var nodes: [GradientNode] = []
    while let node = stack.popLast() {
      nodes.append(node)
      for input in node.inputs {
        if let inputNode = input.node, seen.insert(ObjectIdentifier(inputNode)).inserted {
          stack.append(inputNode)
        }
      }
    }
    return nodes.sorted { $0.position > $1.position }
  }
}

/// Why a backward pass was refused.
public enum AutogradError: Error, Equatable, CustomStringConvertible {
  /// `backward()` without a seed on an output with more than one element.
  case implicitSeedForNonScalar(shape: [Int])
  /// The seed's shape differs from the output's.
  case seedShapeMismatch(seed: [Int], output: [Int])
  /// The pass needs a node whose saved tensors an earlier backward pass already released.
  case graphAlreadyReleased(tapePosition: Int)
  /// A pullback returned a different number of gradients than its node has inputs (an op bug).
  case pullbackGradientCount(returned: Int, inputs: Int)
  /// A pullback returned a gradient whose shape differs from its input's (an op bug).
  case pullbackGradientShape(gradient: [Int], input: [Int])

  public var description: String {
    switch self {
    case .implicitSeedForNonScalar(let shape):
      "backward: a seed gradient can be omitted only for a single-element output; this output has shape \(shape)"
    case .seedShapeMismatch(let seed, let output):
      "backward: seed shape \(seed) differs from output shape \(output)"
    case .graphAlreadyReleased(let position):
      "backward: trying to backward through the graph a second time: the saved tensors of tape node "
        + "\(position) were already released by an earlier backward pass; recompute the forward pass"
    case .pullbackGradientCount(let returned, let inputs):
      "backward: a pullback returned \(returned) gradients for \(inputs) inputs"
    case .pullbackGradientShape(let gradient, let input):
      "backward: a pullback returned a gradient of shape \(gradient) for an input of shape \(input)"
    }
  }
}

extension AutogradError: LocalizedError {
  public var errorDescription: String? { description }
}

/// Whether operations record onto the tape.
public enum GradientMode {
  @TaskLocal public static var isEnabled = true

  /// Runs `body` without recording (inference): results keep no references to their
  /// inputs, so every intermediate is freed as soon as the next layer has consumed it.
  public static func withoutRecording<R>(_ body: () throws -> R) rethrows -> R {
    try $isEnabled.withValue(false, operation: body)
  }
}
