/// `precondition` that keeps its message in optimized builds.
///
/// In `-O` builds a failed `precondition` traps without printing its message, so a user who
/// passes an out-of-range label or mismatched shapes to a release binary would only see
/// "Illegal instruction". Public APIs validate their arguments with this instead; the check
/// costs the same, and the message is built only on failure.
@inline(__always)
public func opPrecondition(
  _ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
  file: StaticString = #fileID, line: UInt = #line
) {
  if !condition() { fatalError(message(), file: file, line: line) }
}
