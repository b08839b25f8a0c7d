"""Models of the book. Each module follows torchvision's layout: blocks, the model, then builders."""
