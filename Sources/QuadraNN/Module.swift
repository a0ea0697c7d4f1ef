/// How a parameter's engine layout maps to PyTorch's, for checkpoint exchange.
///
/// The engine is channels-last, so convolution weights are stored with the input
/// channels (or the depthwise channel) innermost; PyTorch stores them `[O, I, kh, kw]`.
public enum TorchLayout: String, Sendable, Codable {
  /// Same shape and element order in both (linear weights `[out, in]`, vectors).
  case identical
  /// Engine `[O, kh, kw, I]` ↔ PyTorch `[O, I, kh, kw]`.
  case convolution
  /// Engine `[kh, kw, C]` ↔ PyTorch `[C, 1, kh, kw]` (grouped convolution with groups = C).
  case depthwiseConvolution
  /// Engine `[O, I]` (a ``Linear`` on NHWC) ↔ PyTorch `[O, I, 1, 1]` (a 1×1 `nn.Conv2d`).
  case pointwiseConvolution
}

/// A trainable tensor owned by a module, with what the optimizer and checkpoints need to know.
public struct Parameter {
  public let variable: Variable
  /// AdamW applies weight decay only to weights of convolutions and linear maps, never to
  /// norms, biases or layer scales (timm's convention).
  public let weightDecay: Bool
  public let torchLayout: TorchLayout

  public init(_ variable: Variable, weightDecay: Bool, torchLayout: TorchLayout = .identical) {
    self.variable = variable
    self.weightDecay = weightDecay
    self.torchLayout = torchLayout
  }
}

/// Base class of every layer and model.
///
/// A module names its parameters and sub-modules explicitly (``parameters`` and
/// ``children``), so the dotted names of ``namedParameters()`` are exactly the
/// PyTorch `state_dict` keys of the official definitions (`stages.2.5.pwconv1.weight`).
/// Subclasses implement `callAsFunction(_:)` for their forward pass.
open class Module {
  /// Training mode enables drop-path and other train-only behaviour; see ``setTraining(_:)``.
  public private(set) var isTraining = true

  public init() {}

  /// This module's own parameters, by local name.
  open var parameters: [(name: String, parameter: Parameter)] { [] }

  /// Direct sub-modules, by local name.
  open var children: [(name: String, module: Module)] { [] }

  /// All parameters of this module and its descendants with dotted names, in definition order.
  public func namedParameters(prefix: String = "") -> [(name: String, parameter: Parameter)] {
    var result = parameters.map { (name: prefix + $0.name, parameter: $0.parameter) }
    for child in children {
      result += child.module.namedParameters(prefix: prefix + child.name + ".")
    }
    return result
  }

  /// Total number of trainable scalars.
  public var parameterCount: Int {
    namedParameters().reduce(0) { $0 + $1.parameter.variable.value.count }
  }

  /// Switches this module and all descendants between training and evaluation.
  public func setTraining(_ training: Bool) {
    isTraining = training
    for child in children { child.module.setTraining(training) }
  }

  /// Forgets accumulated gradients of all parameters.
  public func zeroGradients() {
    for (_, parameter) in namedParameters() { parameter.variable.zeroGradient() }
  }
}

/// An ordered list of modules named "0", "1", … (PyTorch's `nn.Sequential` / `nn.ModuleList`).
public final class ModuleList<Element: Module>: Module {
  public let modules: [Element]

  public init(_ modules: [Element]) {
    self.modules = modules
  }

  public override var children: [(name: String, module: Module)] {
    modules.enumerated().map { (name: String($0.offset), module: $0.element as Module) }
  }

  public var count: Int { modules.count }
  public subscript(index: Int) -> Element { modules[index] }
}
