/// Updates a fixed list of parameters from their accumulated gradients (`torch.optim.Optimizer`).
///
/// The state (moments, momentum buffers) is per parameter and saved under PyTorch's names:
/// state `s` of parameter `p` is the tensor `<s>.<p>` (`exp_avg.stages.0.0.norm1.weight`), in the
/// engine's layout. An optimizer holds either no state (before its first update) or the full
/// state of every parameter (after it), which makes a saved state checkable: see
/// ``stateKeys(afterSteps:)`` and ``load(state:)``.
public protocol Optimizer: AnyObject {
  /// The parameters it updates, with the names its state is keyed by.
  var parameters: [(name: String, parameter: Parameter)] { get }
  /// η of the next update; a schedule sets it before each step.
  var learningRate: Float { get set }
  /// Completed updates (t in AdamW's bias corrections).
  var step: Int { get }
  /// Names of the per-parameter state tensors, as in PyTorch's optimizer state dict
  /// (`["exp_avg", "exp_avg_sq"]` for AdamW); empty for a stateless optimizer.
  var stateNames: [String] { get }
  /// Applies one update from the parameters' gradients (`parameter.variable.grad`); parameters
  /// without a gradient are left alone. Increments ``step``.
  func update()
  /// The state by key `<stateName>.<parameter>`. The tensors share storage with the optimizer:
  /// holding on to them makes its next update copy that storage once.
  var stateTensors: [String: Tensor] { get }
  /// Replaces the step count and the state. The state must hold exactly the tensors of
  /// ``stateKeys(afterSteps:)`` for `state.step`, each of its parameter's shape; otherwise the
  /// optimizer is left unchanged and the error names every missing, unexpected and misshapen key.
  func load(state: OptimizerState) throws
}

/// An optimizer's step count and named state tensors (what checkpoints save).
public struct OptimizerState {
  /// Completed updates.
  public var step: Int
  /// State by `<stateName>.<parameter>`.
  public var tensors: [String: Tensor]

  public init(step: Int, tensors: [String: Tensor]) {
    self.step = step
    self.tensors = tensors
  }
}

extension Optimizer {
  /// The step count and state, for a checkpoint.
  public var state: OptimizerState { OptimizerState(step: step, tensors: stateTensors) }

  /// The keys of the state after `step` updates, each with the index of its parameter in
  /// ``parameters``: none before the first update, every `<stateName>.<parameter>` after it.
  public func stateKeys(afterSteps step: Int) -> [(key: String, parameterIndex: Int)] {
    guard step > 0 else { return [] }
    var keys: [(key: String, parameterIndex: Int)] = []
    for (index, entry) in parameters.enumerated() {
      for name in stateNames { keys.append((key: "\(name).\(entry.name)", parameterIndex: index)) }
    }
    return keys
  }
}

/// One parameter's optimizer state: tensors updated in place.
///
/// It is a class so the tensors are mutated where they are stored. (A tensor taken out of an
/// array into a local variable shares its storage with the array, so the first write through
/// it would copy the whole tensor, every step.)
public protocol OptimizerParameterState: AnyObject {
  /// The tensors in ``Optimizer/stateNames`` order.
  var tensors: [Tensor] { get }
}

/// The parameters, step count and per-parameter states of a ``PerParameterOptimizer``.
public final class OptimizerStorage<State: OptimizerParameterState> {
  public let parameters: [(name: String, parameter: Parameter)]
  public fileprivate(set) var step = 0
  /// Empty before the first update, then one state per parameter.
  public fileprivate(set) var states: [State] = []

  public init(parameters: [(name: String, parameter: Parameter)]) {
    self.parameters = parameters
  }
}

/// The base AdamW and SGD share (like MLX-Swift's `OptimizerBase`): an optimizer that updates
/// each parameter from its own gradient and state.
///
/// A conforming class supplies the state (``makeState(zerosFor:)``, ``makeState(restoring:)``)
/// and the per-parameter rule (``applyUpdate(to:gradient:state:appliesWeightDecay:)``); the
/// update loop, ``Optimizer/stateTensors`` and the checked ``Optimizer/load(state:)`` come from here.
public protocol PerParameterOptimizer: Optimizer {
  associatedtype ParameterState: OptimizerParameterState
  /// Parameters, step count and states.
  var storage: OptimizerStorage<ParameterState> { get }
  /// The state of a parameter of `shape` before its first update (zeros, as PyTorch's lazy init).
  func makeState(zerosFor shape: [Int]) -> ParameterState
  /// A state from saved tensors in ``Optimizer/stateNames`` order (already checked against the parameter's shape).
  func makeState(restoring tensors: [Tensor]) -> ParameterState
  /// Updates one parameter in place from its gradient; ``Optimizer/step`` is already the new count.
  /// `appliesWeightDecay` is ``Parameter/weightDecay`` (weights of convolutions and linear maps).
  func applyUpdate(to parameter: inout Tensor, gradient: Tensor, state: ParameterState, appliesWeightDecay: Bool)
  /// Updates every parameter that has a gradient this step (``Optimizer/step`` is already the new count).
  /// Default: ``applyUpdate(to:gradient:state:appliesWeightDecay:)`` on each in turn
  /// (``applyEachUpdate(_:)``); an optimizer may update them all in one multi-tensor step instead.
  func applyUpdates(_ updates: [ParameterUpdate<ParameterState>])
}

/// One parameter's update in a step of a ``PerParameterOptimizer``.
public struct ParameterUpdate<State> {
  public let variable: Variable
  public let gradient: Tensor
  public let state: State
  /// ``Parameter/weightDecay``.
  public let appliesWeightDecay: Bool
}

extension PerParameterOptimizer {
  public var parameters: [(name: String, parameter: Parameter)] { storage.parameters }
  public var step: Int { storage.step }

  public func update() {
    storage.step += 1
    if storage.states.isEmpty {
      // All states at once, so that a saved state is either empty or complete.
      storage.states = storage.parameters.map { makeState(zerosFor: $0.parameter.variable.shape) }
    }
    var updates: [ParameterUpdate<ParameterState>] = []
    updates.reserveCapacity(storage.parameters.count)
    for (index, entry) in storage.parameters.enumerated() {
      let variable = entry.parameter.variable
      guard let gradient = variable.grad else { continue }
      opPrecondition(
        gradient.shape == variable.shape,
        "\(Self.self).update: gradient \(gradient.shape) for parameter \(entry.name) of shape \(variable.shape)")
      updates.append(
        ParameterUpdate(
          variable: variable, gradient: gradient, state: storage.states[index],
          appliesWeightDecay: entry.parameter.weightDecay))
    }
    applyUpdates(updates)
  }

  public func applyUpdates(_ updates: [ParameterUpdate<ParameterState>]) { applyEachUpdate(updates) }

  /// ``applyUpdate(to:gradient:state:appliesWeightDecay:)`` on each update in turn.
  public func applyEachUpdate(_ updates: [ParameterUpdate<ParameterState>]) {
    for update in updates {
      update.variable.updateValueInPlace { value in
        applyUpdate(
          to: &value, gradient: update.gradient, state: update.state, appliesWeightDecay: update.appliesWeightDecay)
      }
    }
  }

  public var stateTensors: [String: Tensor] {
    var result: [String: Tensor] = [:]
    for (entry, state) in zip(storage.parameters, storage.states) {
      for (name, tensor) in zip(stateNames, state.tensors) { result["\(name).\(entry.name)"] = tensor }
    }
    return result
  }

  public func load(state: OptimizerState) throws {
    guard state.step >= 0 else { throw OptimizerError.invalidStep(state.step) }
    let expected = stateKeys(afterSteps: state.step)
    var missing: [String] = []
    var wrongShapes: [OptimizerError.ShapeMismatch] = []
    for (key, index) in expected {
      let shape = storage.parameters[index].parameter.variable.shape
      guard let tensor = state.tensors[key] else {
        missing.append(key)
        continue
      }
      if tensor.shape != shape { wrongShapes.append(.init(name: key, expected: shape, found: tensor.shape)) }
    }
    let unexpected = Set(state.tensors.keys).subtracting(expected.map(\.key)).sorted()
    guard missing.isEmpty, unexpected.isEmpty, wrongShapes.isEmpty else {
      throw OptimizerError.stateMismatch(step: state.step, missing: missing, unexpected: unexpected, wrongShapes: wrongShapes)
    }
    let states: [ParameterState] = state.step == 0 ? [] : storage.parameters.map { entry in
      // Own copies: the optimizer then writes into storage nobody else holds.
      makeState(restoring: stateNames.map { state.tensors["\($0).\(entry.name)"]!.copy() })
    }
    storage.step = state.step
    storage.states = states
  }
}

/// Invalid optimizer settings or a saved state that does not fit the parameters.
public enum OptimizerError: Error, CustomStringConvertible, Equatable {
  public struct ShapeMismatch: Equatable, Sendable {
    public var name: String
    public var expected: [Int]
    public var found: [Int]

    public init(name: String, expected: [Int], found: [Int]) {
      self.name = name
      self.expected = expected
      self.found = found
    }
  }

  /// A hyper-parameter outside its range; `allowed` spells the range.
  case invalidHyperparameter(name: String, value: Float, allowed: String)
  /// A negative step count.
  case invalidStep(Int)
  /// The state's tensors do not match the parameters (for a state after `step` updates).
  case stateMismatch(step: Int, missing: [String], unexpected: [String], wrongShapes: [ShapeMismatch])

  /// How many names of each kind a message lists before summarizing the rest.
  static let listedNames = 5

  public var description: String {
    switch self {
    case .invalidHyperparameter(let name, let value, let allowed):
      return "optimizer \(name) must be in \(allowed), got \(value)"
    case .invalidStep(let step):
      return "optimizer state: step must be at least 0, got \(step)"
    case .stateMismatch(let step, let missing, let unexpected, let wrongShapes):
      func list(_ names: [String]) -> String {
        let shown = names.prefix(Self.listedNames).joined(separator: ", ")
        return names.count > Self.listedNames ? "\(shown), … (\(names.count) in all)" : shown
      }
      var parts: [String] = []
      if !missing.isEmpty { parts.append("missing \(list(missing))") }
      if !unexpected.isEmpty { parts.append("unexpected \(list(unexpected))") }
      if !wrongShapes.isEmpty {
        parts.append(list(wrongShapes.map { "\($0.name) (expected shape \($0.expected), found \($0.found))" }))
      }
      return "optimizer state after \(step) step(s) does not match the parameters: " + parts.joined(separator: "; ")
    }
  }
}

/// Checks that `value` lies in a range; the error names the hyper-parameter and the range.
func checkHyperparameter(_ name: String, _ value: Float, in allowed: String, _ isValid: (Float) -> Bool) throws {
  guard value.isFinite, isValid(value) else {
    throw OptimizerError.invalidHyperparameter(name: name, value: value, allowed: allowed)
  }
}
