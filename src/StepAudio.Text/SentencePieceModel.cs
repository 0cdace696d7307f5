using System.Text;

namespace StepAudio.Text;

/// <summary>The kind of a SentencePiece piece (ModelProto.SentencePiece.Type).</summary>
public enum PieceType
{
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

/// <summary>One entry of a SentencePiece vocabulary: its text, log-probability score and type; its id is its index.</summary>
public readonly record struct SentencePiece(string Piece, float Score, PieceType Type);

/// <summary>Thrown when a tokenizer file is missing, malformed or of a kind this front end does not handle.</summary>
public sealed class TokenizerFormatException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// The parts of a SentencePiece <c>tokenizer.model</c> (a serialized <c>ModelProto</c>) that the tokenizer needs:
/// the pieces (field 1: piece = 1, score = 2, type = 3), the trainer's model type (field 2.3) and byte_fallback flag
/// (field 2.35). Read with a small protobuf wire-format reader; every other field is skipped.
/// </summary>
public sealed class SentencePieceModel
{
    public IReadOnlyList<SentencePiece> Pieces { get; }
    /// <summary>TrainerSpec.model_type: 1 = Unigram (the default), 2 = BPE, 3 = word, 4 = char.</summary>
    public int ModelType { get; }
    public bool ByteFallback { get; }

    SentencePieceModel(List<SentencePiece> pieces, int modelType, bool byteFallback)
    {
        Pieces = pieces;
        ModelType = modelType;
        ByteFallback = byteFallback;
    }

    public static SentencePieceModel Load(string path)
    {
        if (!File.Exists(path))
            throw new TokenizerFormatException($"tokenizer model not found: {path}");
        try
        {
            return Parse(File.ReadAllBytes(path));
        }
        catch (TokenizerFormatException e)
        {
            throw new TokenizerFormatException($"{path}: {e.Message}", e);
        }
    }

    public static SentencePieceModel Parse(ReadOnlySpan<byte> data)
    {
        var pieces = new List<SentencePiece>();
        int modelType = 1;
        bool byteFallback = false;
        var reader = new ProtoReader(data);
        while (reader.Next(out int field, out int wire))
        {
            if (field == 1 && wire == 2)
                pieces.Add(ParsePiece(reader.Bytes(), pieces.Count));
            else if (field == 2 && wire == 2)
            {
                var trainer = new ProtoReader(reader.Bytes());
                while (trainer.Next(out int f, out int w))
                {
                    if (f == 3 && w == 0) modelType = (int)trainer.Varint();
                    else if (f == 35 && w == 0) byteFallback = trainer.Varint() != 0;
                    else trainer.Skip(w);
                }
            }
            else
                reader.Skip(wire);
        }
        if (pieces.Count == 0)
            throw new TokenizerFormatException("not a SentencePiece model: no pieces");
        return new SentencePieceModel(pieces, modelType, byteFallback);
    }

    static SentencePiece ParsePiece(ReadOnlySpan<byte> data, int index)
    {
        string? piece = null;
        float score = 0;
        var type = PieceType.Normal;
        var reader = new ProtoReader(data);
        while (reader.Next(out int field, out int wire))
        {
            if (field == 1 && wire == 2) piece = Encoding.UTF8.GetString(reader.Bytes());
            else if (field == 2 && wire == 5) score = reader.Fixed32Float();
            else if (field == 3 && wire == 0) type = (PieceType)(int)reader.Varint();
            else reader.Skip(wire);
        }
        if (string.IsNullOrEmpty(piece))
            throw new TokenizerFormatException($"piece {index} has no text");
        if (type is < PieceType.Normal or > PieceType.Byte)
            throw new TokenizerFormatException($"piece {index} ('{piece}') has unknown type {(int)type}");
        return new SentencePiece(piece, score, type);
    }

    /// <summary>Protobuf wire-format reader over a span (varint, fixed32/64, length-delimited).</summary>
    ref struct ProtoReader(ReadOnlySpan<byte> data)
    {
        readonly ReadOnlySpan<byte> _data = data;
        int _pos;

        public bool Next(out int field, out int wire)
        {
            field = wire = 0;
            if (_pos >= _data.Length) return false;
            ulong key = Varint();
            field = (int)(key >> 3);
            wire = (int)(key & 7);
            return true;
        }

        public ulong Varint()
        {
            ulong result = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                if (_pos >= _data.Length) throw new TokenizerFormatException("truncated varint");
                byte b = _data[_pos++];
                result |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80) return result;
            }
            throw new TokenizerFormatException("varint too long");
        }

        public ReadOnlySpan<byte> Bytes()
        {
            ulong n = Varint();
            if (n > (ulong)(_data.Length - _pos)) throw new TokenizerFormatException("truncated length-delimited field");
            var s = _data.Slice(_pos, (int)n);
            _pos += (int)n;
            return s;
        }

        public float Fixed32Float()
        {
            if (_pos + 4 > _data.Length) throw new TokenizerFormatException("truncated fixed32");
            float v = BitConverter.ToSingle(_data.Slice(_pos, 4)); // protobuf fixed32 is little-endian, as is .NET here
            _pos += 4;
            return v;
        }

        public void Skip(int wire)
        {
            switch (wire)
            {
                case 0: Varint(); break;
                case 1: _pos += 8; break;
                case 2: Bytes(); break;
                case 5: _pos += 4; break;
                default: throw new TokenizerFormatException($"unsupported protobuf wire type {wire}");
            }
            if (_pos > _data.Length) throw new TokenizerFormatException("truncated field");
        }
    }
}
