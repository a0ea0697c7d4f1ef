/// Where a tensor's storage lives and where its ops run: a kind of device and its index
/// among the devices of that kind (`cpu:0`; a second GPU would be `cuda:1`).
///
/// Everything device-specific sits behind ``Backend``: it allocates the buffers of its device,
/// copies to and from the host and implements every tensor primitive. Layers, models and
/// autograd only see ``Tensor`` values, so a new device adds a ``Kind`` case and a backend
/// (see ``Backends``) without touching them.
public struct Device: Sendable, Hashable, Codable, CustomStringConvertible {
  /// The family of a device; each kind has one default backend (``Backends/defaultBackend(for:)``).
  public enum Kind: String, Sendable, Hashable, Codable, CaseIterable {
    /// Host memory, computed by the CPU (and reference) backends.
    case cpu
  }

  public var kind: Kind
  /// Which device of this kind (0 for the first); at least 0.
  public var index: Int

  /// - Parameter index: must be ≥ 0.
  public init(kind: Kind, index: Int = 0) {
    opPrecondition(index >= 0, "Device: index must be ≥ 0, got \(index) for kind \(kind.rawValue)")
    self.kind = kind
    self.index = index
  }

  /// Host memory (`cpu:0`), where every tensor lives unless a backend places it elsewhere.
  public static let cpu = Device(kind: .cpu)

  /// `kind:index`, e.g. `cpu:0`.
  public var description: String { "\(kind.rawValue):\(index)" }

  /// Parses `kind` or `kind:index` (e.g. `cpu`, `cpu:0`); nil when the kind is unknown or the index is not ≥ 0.
  public init?(_ text: String) {
    let parts = text.split(separator: ":", omittingEmptySubsequences: false)
    guard parts.count == 1 || parts.count == 2, let kind = Kind(rawValue: String(parts[0])) else { return nil }
    var index = 0
    if parts.count == 2 {
      guard let parsed = Int(parts[1]), parsed >= 0 else { return nil }
      index = parsed
    }
    self.init(kind: kind, index: index)
  }

  /// Encoded as its description (`"cpu:0"`); a bare kind (`"cpu"`, the old encoding) decodes as index 0.
  public init(from decoder: any Decoder) throws {
    let container = try decoder.singleValueContainer()
    let text = try container.decode(String.self)
    guard let device = Device(text) else {
      throw DecodingError.dataCorruptedError(
        in: container,
        debugDescription: "device \"\(text)\" is not KIND or KIND:INDEX with KIND in "
          + "\(Kind.allCases.map(\.rawValue)) and INDEX ≥ 0")
    }
    self = device
  }

  public func encode(to encoder: any Encoder) throws {
    var container = encoder.singleValueContainer()
    try container.encode(description)
  }
}
