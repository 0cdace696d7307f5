using System.Text;
using System.Text.Json;

namespace StepAudio.Text;

/// <summary>
/// The Step1 text tokenizer, reproducing what the reference (tts.py, transformers 4.53.3) gets from
/// <c>AutoTokenizer.from_pretrained(model_dir)</c>: a <c>LlamaTokenizerFast</c> converted from <c>tokenizer.model</c>
/// (SentencePiece Unigram with byte fallback) with <c>tokenizer_config.json</c> (<c>legacy: false</c>).
/// Encoding, as that converted tokenizer does it:
/// <list type="number">
/// <item>Added tokens are split out first, leftmost-longest exact match: every CONTROL and USER_DEFINED piece of the
/// model (<c>&lt;s&gt;</c>, <c>&lt;|BOT|&gt;</c>, <c>&lt;|EOT|&gt;</c>, the 9216 <c>&lt;audio_N&gt;</c>, ...), the
/// special tokens named in tokenizer_config.json (bos/eos/unk/pad), its <c>added_tokens_decoder</c> and, when present,
/// tokenizer.json's <c>added_tokens</c>.</item>
/// <item>Each remaining section: spaces become <c>▁</c>; with legacy false, <c>▁</c> is prepended only to a section
/// that starts the text (offset 0) and does not already start with <c>▁</c> (Metaspace prepend_scheme "first"; with
/// legacy true every section gets it). No other normalisation (the converter sets none).</item>
/// <item>Unigram Viterbi over all pieces (max summed score; an uncovered character is an unknown node scored
/// min score − 10); consecutive unknowns are fused and, with byte fallback, become their UTF-8 bytes as
/// <c>&lt;0xNN&gt;</c> pieces.</item>
/// </list>
/// <see cref="Encode"/> adds no BOS/EOS: tts.py prepends id 1 itself (stepaudio-spec.md §2.3).
/// </summary>
public sealed class StepTokenizer
{
    const char Meta = '▁';
    const double UnknownPenalty = 10.0;

    readonly SentencePiece[] _pieces;
    readonly Dictionary<string, int> _pieceToId;
    readonly CharTrie _vocabTrie = new();
    readonly CharTrie _addedTrie = new();
    readonly Dictionary<int, string> _addedById = new();
    readonly Dictionary<string, int> _addedByContent = new(StringComparer.Ordinal);
    readonly HashSet<int> _specialIds = new();
    readonly int[] _byteIds = new int[256];
    readonly double _unknownScore;

    /// <summary>Id of the unknown piece (0 for Step1).</summary>
    public int UnkId { get; }
    /// <summary>Id of <c>&lt;s&gt;</c> (1 for Step1); tts.py starts every prompt with it.</summary>
    public int BosId { get; }
    /// <summary>Id of <c>&lt;audio_0&gt;</c> (65536 in the release), or -1 when the model has no audio tokens.</summary>
    public int AudioTokenBase { get; }
    /// <summary>tokenizer_config.json <c>legacy</c> (HF's default, true, when the key or the file is absent).</summary>
    public bool Legacy { get; }
    /// <summary>Total number of ids (model pieces plus added tokens with higher ids).</summary>
    public int VocabSize { get; }
    /// <summary>The folder (or file) it was loaded from, for messages.</summary>
    public string Source { get; }

    StepTokenizer(SentencePieceModel model, TokenizerConfig config, string source)
    {
        Source = source;
        if (model.ModelType != 1)
            throw new TokenizerFormatException($"{source}: SentencePiece model type {model.ModelType} is not Unigram (1); only Unigram is supported");
        _pieces = model.Pieces.ToArray();
        _pieceToId = new Dictionary<string, int>(_pieces.Length, StringComparer.Ordinal);
        double minScore = double.MaxValue;
        for (int id = 0; id < _pieces.Length; id++)
        {
            var p = _pieces[id];
            // HF's LlamaConverter gives the first three pieces score 0; every piece is in the Unigram vocabulary.
            double score = id < 3 ? 0.0 : p.Score;
            _pieceToId.TryAdd(p.Piece, id);
            _vocabTrie.Add(p.Piece, id, score);
            minScore = Math.Min(minScore, score);
            if (p.Type is PieceType.Control or PieceType.UserDefined)
                AddToken(p.Piece, id, special: p.Type == PieceType.Control);
        }
        _unknownScore = minScore - UnknownPenalty;
        Legacy = config.Legacy;
        _prependFirst = config.AddPrefixSpace;

        UnkId = config.UnkToken is { } unk && _pieceToId.TryGetValue(unk, out int u) ? u
            : Array.FindIndex(_pieces, p => p.Type == PieceType.Unknown);
        if (UnkId < 0)
            throw new TokenizerFormatException($"{source}: the model has no unknown piece");
        foreach (var special in config.SpecialTokens)
        {
            if (_pieceToId.TryGetValue(special, out int id)) AddToken(special, id, special: true);
            else if (!config.AddedTokens.Any(t => t.Content == special))
                throw new TokenizerFormatException($"{source}: special token '{special}' from tokenizer_config.json is not in the vocabulary");
        }
        foreach (var t in config.AddedTokens)
            AddToken(t.Content, t.Id, t.Special);
        BosId = config.BosToken is { } bos && _pieceToId.TryGetValue(bos, out int b) ? b : 1;

        for (int i = 0; i < 256; i++)
            _byteIds[i] = _pieceToId.TryGetValue($"<0x{i:X2}>", out int id) ? id : -1;
        if (model.ByteFallback && _byteIds.Any(id => id < 0))
            throw new TokenizerFormatException($"{source}: byte_fallback is set but some <0xNN> pieces are missing");
        _byteFallback = model.ByteFallback;
        AudioTokenBase = _pieceToId.TryGetValue("<audio_0>", out int a0) ? a0 : -1;
        VocabSize = Math.Max(_pieces.Length, _addedById.Count == 0 ? 0 : _addedById.Keys.Max() + 1);
    }

    readonly bool _prependFirst;
    readonly bool _byteFallback;

    void AddToken(string content, int id, bool special)
    {
        _addedTrie.Add(content, id, 0);
        _addedById[id] = content;
        _addedByContent[content] = id;
        if (special) _specialIds.Add(id);
    }

    /// <summary>Loads <c>tokenizer.model</c>, <c>tokenizer_config.json</c> (optional) and <c>tokenizer.json</c>
    /// (optional; only its added tokens are used) from a model folder.</summary>
    public static StepTokenizer Load(string folder)
    {
        if (!Directory.Exists(folder))
            throw new TokenizerFormatException($"tokenizer folder not found: {folder}");
        var model = SentencePieceModel.Load(Path.Combine(folder, "tokenizer.model"));
        var config = TokenizerConfig.Load(folder);
        return new StepTokenizer(model, config, folder);
    }

    /// <summary>Token ids of <paramref name="text"/>, without BOS/EOS (HF <c>encode(text, add_special_tokens=False)</c>;
    /// what tts.py's <c>tokenizer.encode</c> contributes to a prompt).</summary>
    public int[] Encode(string text)
    {
        var ids = new List<int>();
        EncodeInto(text, ids);
        return ids.ToArray();
    }

    /// <summary>The pieces (token strings) of <see cref="Encode"/>.</summary>
    public string[] EncodeToPieces(string text) => Encode(text).Select(IdToPiece).ToArray();

    void EncodeInto(string text, List<int> ids)
    {
        ArgumentNullException.ThrowIfNull(text);
        int sectionStart = 0, i = 0;
        while (i < text.Length)
        {
            var (len, id) = _addedTrie.LongestMatch(text, i);
            if (len == 0) { i++; continue; }
            if (i > sectionStart) EncodeSection(text, sectionStart, i, ids);
            ids.Add(id);
            i += len;
            sectionStart = i;
        }
        if (text.Length > sectionStart) EncodeSection(text, sectionStart, text.Length, ids);
    }

    void EncodeSection(string text, int start, int end, List<int> ids)
    {
        var sb = new StringBuilder(end - start + 1);
        bool prepend = Legacy ? _prependFirst : _prependFirst && start == 0 && text[start] is not (Meta or ' '); // checked after ' ' -> ▁
        if (prepend) sb.Append(Meta);
        for (int i = start; i < end; i++) sb.Append(text[i] == ' ' ? Meta : text[i]);
        Viterbi(sb.ToString(), ids);
    }

    void Viterbi(string s, List<int> ids)
    {
        int n = s.Length;
        var best = new double[n + 1];
        var from = new int[n + 1];
        var tokenAt = new int[n + 1];
        Array.Fill(from, -1);
        for (int start = 0; start < n; start = NextChar(s, start))
        {
            if (start > 0 && from[start] < 0) continue; // unreachable (never happens: unknown nodes cover every char)
            int charLen = NextChar(s, start) - start;
            bool hasSingle = false;
            foreach (var (len, id, score) in _vocabTrie.PrefixMatches(s, start))
            {
                int end = start + len;
                double candidate = best[start] + score;
                if (from[end] < 0 || candidate > best[end]) { best[end] = candidate; from[end] = start; tokenAt[end] = id; }
                if (len == charLen) hasSingle = true;
            }
            if (!hasSingle)
            {
                int end = start + charLen;
                double candidate = best[start] + _unknownScore;
                if (from[end] < 0 || candidate > best[end]) { best[end] = candidate; from[end] = start; tokenAt[end] = UnkId; }
            }
        }
        // Backtrack; consecutive unknown nodes are fused into one token (HF Unigram fuse_unk).
        var path = new List<(int Start, int End, int Id)>();
        for (int end = n; end > 0;)
        {
            int start = from[end], id = tokenAt[end];
            if (id == UnkId && path.Count > 0 && path[^1].Id == UnkId)
                path[^1] = (start, path[^1].End, UnkId);
            else
                path.Add((start, end, id));
            end = start;
        }
        for (int k = path.Count - 1; k >= 0; k--)
        {
            var (start, end, id) = path[k];
            if (id != UnkId) { ids.Add(id); continue; }
            string piece = s[start..end];
            if (_pieceToId.TryGetValue(piece, out int known)) { ids.Add(known); continue; }
            if (_byteFallback)
                foreach (byte b in Encoding.UTF8.GetBytes(piece)) ids.Add(_byteIds[b]);
            else
                ids.Add(UnkId);
        }
    }

    static int NextChar(string s, int i) => char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]) ? i + 2 : i + 1;

    /// <summary>The token string of an id (model piece or added token).</summary>
    public string IdToPiece(int id)
    {
        if (_addedById.TryGetValue(id, out var added)) return added;
        if ((uint)id < (uint)_pieces.Length) return _pieces[id].Piece;
        throw new ArgumentOutOfRangeException(nameof(id), id, $"token id {id} is outside the vocabulary of {Source} ({VocabSize} ids)");
    }

    /// <summary>The id of a piece or added token, or null when there is none.</summary>
    public int? PieceToId(string piece) =>
        _addedByContent.TryGetValue(piece, out int added) ? added : _pieceToId.TryGetValue(piece, out int id) ? id : null;

    /// <summary>Whether an id is a special token (CONTROL pieces such as &lt;s&gt;, &lt;|BOT|&gt;, &lt;|EOT|&gt;, and the
    /// configured special tokens). <c>&lt;audio_N&gt;</c> tokens are not special.</summary>
    public bool IsSpecial(int id) => _specialIds.Contains(id);

    /// <summary>
    /// Text of ids, as the converted HF tokenizer decodes (<c>▁</c> → space, runs of byte pieces → their UTF-8 text,
    /// each byte of an invalid sequence → U+FFFD, then one leading space stripped). Added tokens, <c>&lt;audio_N&gt;</c>
    /// included, appear verbatim; <paramref name="skipSpecialTokens"/> drops the special ones.
    /// </summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false)
    {
        var sb = new StringBuilder();
        var pending = new List<byte>();
        foreach (int id in ids)
        {
            if (skipSpecialTokens && _specialIds.Contains(id)) continue;
            string piece = IdToPiece(id);
            if (!_addedById.ContainsKey(id) && _pieces[id].Type == PieceType.Byte && TryParseBytePiece(piece, out byte b))
            {
                pending.Add(b);
                continue;
            }
            FlushBytes(sb, pending);
            sb.Append(piece.Replace(Meta, ' '));
        }
        FlushBytes(sb, pending);
        if (_prependFirst && sb.Length > 0 && sb[0] == ' ') sb.Remove(0, 1);
        return sb.ToString();
    }

    static bool TryParseBytePiece(string piece, out byte value)
    {
        value = 0;
        return piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>' &&
               byte.TryParse(piece.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out value);
    }

    static readonly UTF8Encoding StrictUtf8 = new(false, throwOnInvalidBytes: true);

    static void FlushBytes(StringBuilder sb, List<byte> pending)
    {
        if (pending.Count == 0) return;
        try { sb.Append(StrictUtf8.GetString(pending.ToArray())); }
        catch (DecoderFallbackException) { sb.Append('\uFFFD', pending.Count); }
        pending.Clear();
    }

    /// <summary>A character trie over UTF-16 code units; each terminal node carries a token id and score.</summary>
    sealed class CharTrie
    {
        readonly Dictionary<long, int> _children = new();
        readonly List<(int Id, double Score)> _terminal = [(-1, 0)];

        public void Add(string key, int id, double score)
        {
            int node = 0;
            foreach (char c in key)
            {
                long edge = ((long)node << 16) | c;
                if (!_children.TryGetValue(edge, out int child))
                {
                    child = _terminal.Count;
                    _terminal.Add((-1, 0));
                    _children[edge] = child;
                }
                node = child;
            }
            if (_terminal[node].Id < 0) _terminal[node] = (id, score); // first occurrence wins, as a dict insert would
        }

        /// <summary>Every key that is a prefix of s[start..], shortest first: (length, id, score).</summary>
        public IEnumerable<(int Length, int Id, double Score)> PrefixMatches(string s, int start)
        {
            int node = 0;
            for (int i = start; i < s.Length; i++)
            {
                if (!_children.TryGetValue(((long)node << 16) | s[i], out node)) yield break;
                var t = _terminal[node];
                if (t.Id >= 0) yield return (i - start + 1, t.Id, t.Score);
            }
        }

        /// <summary>The longest key starting at s[start] as (length, id), or (0, -1).</summary>
        public (int Length, int Id) LongestMatch(string s, int start)
        {
            int node = 0, bestLen = 0, bestId = -1;
            for (int i = start; i < s.Length; i++)
            {
                if (!_children.TryGetValue(((long)node << 16) | s[i], out node)) break;
                var t = _terminal[node];
                if (t.Id >= 0) { bestLen = i - start + 1; bestId = t.Id; }
            }
            return (bestLen, bestId);
        }
    }

    /// <summary>What the tokenizer takes from tokenizer_config.json and tokenizer.json.</summary>
    sealed record TokenizerConfig(bool Legacy, bool AddPrefixSpace, string? BosToken, string? UnkToken,
        IReadOnlyList<string> SpecialTokens, IReadOnlyList<(string Content, int Id, bool Special)> AddedTokens)
    {
        public static TokenizerConfig Load(string folder)
        {
            bool legacy = true, addPrefixSpace = true; // HF defaults (legacy None -> True, add_prefix_space None -> True)
            string? bos = null, unk = null;
            var specials = new List<string>();
            var added = new List<(string, int, bool)>();
            string configPath = Path.Combine(folder, "tokenizer_config.json");
            if (File.Exists(configPath))
            {
                using var doc = ParseJson(configPath);
                var root = doc.RootElement;
                if (root.TryGetProperty("tokenizer_class", out var cls) && cls.ValueKind == JsonValueKind.String &&
                    cls.GetString() is { } name && !name.StartsWith("LlamaTokenizer", StringComparison.Ordinal))
                    throw new TokenizerFormatException($"{configPath}: tokenizer_class '{name}' is not supported (expected LlamaTokenizer)");
                if (root.TryGetProperty("legacy", out var l) && l.ValueKind is JsonValueKind.True or JsonValueKind.False)
                    legacy = l.GetBoolean();
                if (root.TryGetProperty("add_prefix_space", out var aps) && aps.ValueKind is JsonValueKind.True or JsonValueKind.False)
                    addPrefixSpace = aps.GetBoolean();
                foreach (var key in new[] { "bos_token", "eos_token", "unk_token", "pad_token" })
                {
                    if (!root.TryGetProperty(key, out var v)) continue;
                    string? content = v.ValueKind == JsonValueKind.String ? v.GetString()
                        : v.ValueKind == JsonValueKind.Object && v.TryGetProperty("content", out var c) ? c.GetString() : null;
                    if (content is null) continue;
                    specials.Add(content);
                    if (key == "bos_token") bos = content;
                    if (key == "unk_token") unk = content;
                }
                if (root.TryGetProperty("added_tokens_decoder", out var dec) && dec.ValueKind == JsonValueKind.Object)
                    foreach (var entry in dec.EnumerateObject())
                    {
                        if (!int.TryParse(entry.Name, out int id) || !entry.Value.TryGetProperty("content", out var c) || c.GetString() is not { } content)
                            throw new TokenizerFormatException($"{configPath}: added_tokens_decoder entry '{entry.Name}' needs an integer key and a content string");
                        added.Add((content, id, entry.Value.TryGetProperty("special", out var s) && s.ValueKind == JsonValueKind.True));
                    }
            }
            string jsonPath = Path.Combine(folder, "tokenizer.json");
            if (File.Exists(jsonPath))
            {
                using var doc = ParseJson(jsonPath);
                if (doc.RootElement.TryGetProperty("added_tokens", out var arr) && arr.ValueKind == JsonValueKind.Array)
                    foreach (var t in arr.EnumerateArray())
                    {
                        if (!t.TryGetProperty("id", out var idEl) || !idEl.TryGetInt32(out int id) ||
                            !t.TryGetProperty("content", out var c) || c.GetString() is not { } content)
                            throw new TokenizerFormatException($"{jsonPath}: an added_tokens entry needs 'id' and 'content'");
                        added.Add((content, id, t.TryGetProperty("special", out var s) && s.ValueKind == JsonValueKind.True));
                    }
            }
            return new TokenizerConfig(legacy, addPrefixSpace, bos, unk, specials, added);
        }

        static JsonDocument ParseJson(string path)
        {
            try { return JsonDocument.Parse(File.ReadAllBytes(path)); }
            catch (JsonException e) { throw new TokenizerFormatException($"{path}: invalid JSON ({e.Message})", e); }
        }
    }
}
