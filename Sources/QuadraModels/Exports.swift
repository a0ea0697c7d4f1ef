@_exported import QuadraNN
