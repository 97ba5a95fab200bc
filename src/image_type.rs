//! The image types the service stores, and how an upload's type is told from its first bytes.
//!
//! SECURITY: the client's Content-Type and file extension are never trusted. The stored name's
//! extension, and so the type the file is later served with, comes only from the magic bytes.

use std::fmt;

/// How many leading bytes are enough to recognise every accepted type (the ISO-BMFF `ftyp` box
/// of AVIF and HEIC lists its compatible brands after the first 16 bytes).
pub const SNIFF_LEN: usize = 512;

/// An image type the service can accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageType {
    Jpeg,
    Png,
    Webp,
    Gif,
    Avif,
    Heic,
}

impl ImageType {
    pub const ALL: [ImageType; 6] = [
        Self::Jpeg,
        Self::Png,
        Self::Webp,
        Self::Gif,
        Self::Avif,
        Self::Heic,
    ];

    /// The name used in `--allowed-types`.
    pub fn from_config_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.config_name() == name.to_ascii_lowercase())
    }

    pub fn config_name(self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::Png => "png",
            Self::Webp => "webp",
            Self::Gif => "gif",
            Self::Avif => "avif",
            Self::Heic => "heic",
        }
    }

    /// The extension given to a stored file of this type, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Heic => "heic",
            other => other.config_name(),
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
            Self::Gif => "image/gif",
            Self::Avif => "image/avif",
            Self::Heic => "image/heic",
        }
    }
}

impl fmt::Display for ImageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mime())
    }
}

/// What the first bytes of an upload turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sniffed {
    Image(ImageType),
    /// Recognised, but not an image type this service stores (the MIME type found).
    Other(&'static str),
    Unknown,
}

impl Sniffed {
    /// Recognises `head`, the first [`SNIFF_LEN`] bytes of a file (fewer if the file is shorter).
    pub fn from_head(head: &[u8]) -> Self {
        let Some(kind) = infer::get(head) else {
            return Self::Unknown;
        };
        let image = match kind.mime_type() {
            "image/jpeg" => ImageType::Jpeg,
            "image/png" => ImageType::Png,
            "image/webp" => ImageType::Webp,
            "image/gif" => ImageType::Gif,
            "image/avif" => ImageType::Avif,
            "image/heif" | "image/heic" => ImageType::Heic,
            other => return Self::Other(other),
        };
        Self::Image(image)
    }

    /// A short description for error messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Image(t) => t.mime().to_owned(),
            Self::Other(mime) => (*mime).to_owned(),
            Self::Unknown => "data that is not a recognised image".to_owned(),
        }
    }
}

/// The Content-Type a stored file is served with, from its extension.
///
/// SECURITY: only the image types above are served as what they are. Anything else (an old file
/// with another extension, SVG, HTML) is served as an opaque download, so a browser never runs it.
pub fn served_content_type(file_name: &str) -> Option<ImageType> {
    let ext = file_name.rsplit_once('.')?.1.to_ascii_lowercase();
    match ext.as_str() {
        "jpg" | "jpeg" | "jpe" | "jfif" => Some(ImageType::Jpeg),
        "png" => Some(ImageType::Png),
        "webp" => Some(ImageType::Webp),
        "gif" => Some(ImageType::Gif),
        "avif" => Some(ImageType::Avif),
        "heic" | "heif" => Some(ImageType::Heic),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_round_trip() {
        for t in ImageType::ALL {
            assert_eq!(ImageType::from_config_name(t.config_name()), Some(t));
        }
        assert_eq!(ImageType::from_config_name("svg"), None);
    }

    #[test]
    fn only_image_extensions_get_an_image_type() {
        assert_eq!(served_content_type("a.JPG"), Some(ImageType::Jpeg));
        assert_eq!(served_content_type("a.heif"), Some(ImageType::Heic));
        assert_eq!(served_content_type("a.svg"), None);
        assert_eq!(served_content_type("a.html"), None);
        assert_eq!(served_content_type("noext"), None);
    }
}
